"""Make a release: one version, written once, and every ref that points at it.

    python -m tools.release X.Y.Z          # or: make release VERSION=X.Y.Z

Refuses a dirty tree. Writes the version into `pyproject.toml` (the one place it lives), points the launch
buttons (`repository.branch` of `_config.yml`) and every chapter's setup cell at the tag `vX.Y.Z`, updates
`CITATION.cff`, runs `make test` on the result, and only when it passes commits and creates the annotated tag.
Then push both (`git push && git push origin vX.Y.Z`): the publishing workflow builds and deploys the site.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from datetime import date

from tools import book

VERSION = re.compile(r"\d+\.\d+\.\d+")


def git(*args: str, check: bool = True) -> str:
    """Run git in the book's tree; return its standard output."""
    proc = subprocess.run(["git", *args], cwd=book.ROOT, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"error: git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def set_version(version: str) -> list[str]:
    """Write `version` and its tag into pyproject, _config.yml, CITATION.cff and the setup cells; return files."""
    from tools import pairs, setup_cells

    tag = f"v{version}"
    edits = {
        "pyproject.toml": (r'(?m)^version = "[^"]*"', f'version = "{version}"'),
        "_config.yml": (r"(?m)^(  branch: )\S+", rf"\g<1>{tag}"),
        "CITATION.cff": (r"(?m)^version: .*$", f"version: {version}"),
    }
    for name, (pattern, new) in edits.items():
        path = book.ROOT / name
        text, n = re.subn(pattern, new, path.read_text(), count=1)
        if n != 1:
            raise SystemExit(f"error: found no version to rewrite in {name}")
        if name == "CITATION.cff":
            text = re.sub(r"(?m)^date-released: .*$", f'date-released: "{date.today().isoformat()}"', text)
        path.write_text(text)
    for source in pairs.paired_sources():
        setup_cells.write(source)
    changed = git("status", "--porcelain").splitlines()
    return [line[3:] for line in changed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", help="X.Y.Z")
    parser.add_argument("--test-command", default="make test", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not VERSION.fullmatch(args.version):
        parser.error(f"version {args.version!r} is not X.Y.Z (for example 0.2.0)")
    tag = f"v{args.version}"
    if git("status", "--porcelain", "--untracked-files=no").strip():
        raise SystemExit("error: the tree has uncommitted changes; commit or stash them before a release")
    if git("tag", "--list", tag).strip():
        raise SystemExit(f"error: the tag {tag} exists already")
    changed = set_version(args.version)
    print(f"release {tag}: rewrote {', '.join(changed) or 'nothing (already at this version)'}")
    print(f"running `{args.test_command}` on the release tree ...", flush=True)
    if subprocess.run(args.test_command, shell=True, cwd=book.ROOT).returncode != 0:
        git("checkout", "--", *changed) if changed else None
        raise SystemExit(f"error: `{args.test_command}` failed; the release was not made (files restored)")
    if changed:
        git("add", "--", *changed)
        git("commit", "-q", "-m", f"Release {tag}")
    git("tag", "-a", tag, "-m", f"Release {tag}")
    print(f"tagged {tag}. Next: git push && git push origin {tag} (the workflow publishes the site)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
