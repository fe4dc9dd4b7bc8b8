"""Experiment configs: one typed dataclass per experiment with a `quick` and a `full` preset.

Explained in chapter "Using this book". Pattern::

    @dataclass(frozen=True)
    class HijackConfig(Config):
        d: int = 64          # width
        steps: int = 300     # training steps
        PRESETS = {"quick": {}, "full": {"d": 256, "steps": 5000}}

    cfg = HijackConfig.for_profile(run.profile)   # prints one line: the sizes a profile sets
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from lib.progress import smoke

SMOKE_CAPS_ENV = "BOOK_SMOKE_CAPS"
"""Path of a JSON file {config class: {field: value}}: the sizes the smoke run caps (set by the runner)."""


def smoke_caps(name: str) -> dict[str, Any]:
    """Return the fields of config class `name` that the smoke run of the full profile caps (memory, samples)."""
    path = os.environ.get(SMOKE_CAPS_ENV)
    if not (smoke() and path and Path(path).exists()):
        return {}
    return json.loads(Path(path).read_text()).get(name, {})


def _default(field: dataclasses.Field) -> Any:
    """Return a dataclass field's default (None when it has none)."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class of experiment configs; subclasses are frozen dataclasses with `PRESETS`."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "full": {}}

    @classmethod
    def for_profile(cls, profile: str, *, show: bool = True, **overrides: Any):
        """Return the preset for `profile` (`quick` or `full`) with `overrides` applied; print it."""
        if profile not in cls.PRESETS:
            raise ValueError(
                f"{cls.__name__} has no preset for profile {profile!r}; presets: {', '.join(cls.PRESETS)}."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted((set(cls.PRESETS[profile]) | set(overrides)) - names)
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {unknown}; fields: {sorted(names)}")
        caps = smoke_caps(cls.__name__) if profile == "full" else {}
        cfg = cls(**{**cls.PRESETS[profile], **caps, **overrides})
        if show:
            print(cfg.line(profile, overrides=overrides, caps=caps))
        return cfg

    def replace(self, **changes: Any):
        """Return a copy with `changes` applied (fields checked, like `for_profile`)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {unknown}; fields: {sorted(names)}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict."""
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Return a short stable hash of the class name and fields (for caching)."""
        blob = json.dumps([type(self).__name__, self.as_dict()], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def line(self, profile: str, *, overrides: dict[str, Any] | None = None, caps: dict[str, Any] | None = None) -> str:
        """Return one line: the fields a profile sets (with the other profiles' values), then what differs from the
        defaults because the caller set it, then the smoke run's caps; e.g.
        ``HijackConfig [quick]: d=64 (full 256), steps=300 (full 5000); set here: lr=0.01``."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        defaults = {k: _default(f) for k, f in fields.items()}
        sized = dict.fromkeys(k for preset in self.PRESETS.values() for k in preset)
        parts = []
        for k in sized:
            others = ", ".join(f"{p} {self.PRESETS[p].get(k, defaults[k])!r}" for p in self.PRESETS if p != profile)
            parts.append(f"{k}={getattr(self, k)!r}" + (f" ({others})" if others else ""))
        here = [
            f"{k}={v!r}"
            for k, v in (overrides or {}).items()
            if k not in sized and v != defaults[k] and k not in (caps or {})
        ]
        line = f"{type(self).__name__} [{profile}]: " + (", ".join(parts) or "the defaults")
        if here:
            line += "; set here: " + ", ".join(here)
        if caps:
            line += "; smoke run capped " + ", ".join(f"{k}={v!r}" for k, v in caps.items())
        return line

    def describe(self, profile: str | None = None) -> str:
        """Return a readable table of every field (`print(cfg.describe())` shows them all)."""
        head = f"{type(self).__name__}" + (f" [{profile}]" if profile else "")
        width = max((len(f.name) for f in dataclasses.fields(self)), default=0)
        rows = [f"  {f.name:<{width}} = {getattr(self, f.name)!r}" for f in dataclasses.fields(self)]
        return "\n".join([head, *rows])
