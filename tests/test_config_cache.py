"""lib.config presets and lib.cache on-disk results."""

from dataclasses import dataclass

import pytest
import torch

from lib.cache import cache_path, cached
from lib.config import Config


@dataclass(frozen=True)
class ToyConfig(Config):
    n: int = 10
    lr: float = 0.1
    PRESETS = {"quick": {}, "full": {"n": 1000}}


def test_presets_and_overrides(capsys):
    assert ToyConfig.for_profile("quick").n == 10
    assert "ToyConfig [quick]" in capsys.readouterr().out
    assert ToyConfig.for_profile("full", show=False).n == 1000
    assert ToyConfig.for_profile("full", show=False, lr=0.5).lr == 0.5


def test_the_printed_config_is_one_line_of_what_a_profile_or_the_caller_sets(capsys):
    ToyConfig.for_profile("quick")
    ToyConfig.for_profile("full", lr=0.5)
    ToyConfig.for_profile("quick", lr=0.1)  # the default: nothing to say
    assert capsys.readouterr().out.splitlines() == [
        "ToyConfig [quick]: n=10 (full 1000)",
        "ToyConfig [full]: n=1000 (quick 10); set here: lr=0.5",
        "ToyConfig [quick]: n=10 (full 1000)",
    ]


def test_bad_profile_and_field():
    with pytest.raises(ValueError, match="no preset for profile 'medium'"):
        ToyConfig.for_profile("medium")
    with pytest.raises(TypeError, match="no field"):
        ToyConfig.for_profile("quick", width=3)


def test_replace_checks_fields():
    assert ToyConfig().replace(n=3) == ToyConfig(n=3)
    with pytest.raises(TypeError, match="no field"):
        ToyConfig().replace(width=3)


def test_cache_file_names_carry_the_lib_fingerprint(monkeypatch, tmp_path):
    from lib import cache

    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path))
    first = cache_path("toy", ToyConfig())
    monkeypatch.setattr(cache, "lib_fingerprint", lambda: "changed")
    assert cache_path("toy", ToyConfig()) != first and cache_path("toy", ToyConfig()).name.endswith("libchanged.pt")


def test_key_depends_on_fields():
    assert ToyConfig().key() == ToyConfig().key() != ToyConfig(n=11).key()


def test_cached_computes_once(monkeypatch, tmp_path):
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("BOOK_NO_CACHE", raising=False)
    calls = []

    def compute():
        calls.append(1)
        return {"w": torch.arange(3.0), "acc": 0.5}

    first = cached("toy", ToyConfig(), compute)
    second = cached("toy", ToyConfig(), compute)
    assert len(calls) == 1 and torch.equal(first["w"], second["w"]) and second["acc"] == 0.5
    cached("toy", ToyConfig(n=3), compute)
    assert len(calls) == 2
    cache_path("toy", ToyConfig()).write_bytes(b"garbage")
    cached("toy", ToyConfig(), compute)
    assert len(calls) == 3
