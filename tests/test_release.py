"""Reuse: the license, the citation file and `make release` (in a throwaway clone of the repository)."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tools import book, setup_cells

CFFCONVERT = book.ROOT / ".venv" / "cff" / "bin" / "cffconvert"


def test_license_metadata_and_files():
    meta = tomllib.loads((book.ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "MIT" and "LICENSE" in meta["license-files"]
    text = (book.ROOT / "LICENSE").read_text()
    assert "MIT License" in text and "CC-BY-4.0" in text
    assert "## License" in (book.ROOT / "README.md").read_text()


def test_citation_file_is_valid_cff_and_agrees_with_the_book():
    if not CFFCONVERT.exists():
        pytest.skip("cffconvert is installed by `make install` into .venv/cff")
    ok = subprocess.run([str(CFFCONVERT), "--validate", "-i", str(book.ROOT / "CITATION.cff")], capture_output=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    cff = yaml.safe_load((book.ROOT / "CITATION.cff").read_text())
    config = yaml.safe_load((book.ROOT / "_config.yml").read_text())
    assert cff["version"] == setup_cells.version() and cff["title"] == config["title"]
    assert cff["repository-code"] == config["repository"]["url"]


def test_cffconvert_rejects_a_broken_file(tmp_path):
    if not CFFCONVERT.exists():
        pytest.skip("cffconvert is installed by `make install` into .venv/cff")
    broken = tmp_path / "CITATION.cff"
    broken.write_text((book.ROOT / "CITATION.cff").read_text().replace("cff-version: 1.2.0", "cff-version: 9"))
    assert subprocess.run([str(CFFCONVERT), "--validate", "-i", str(broken)], capture_output=True).returncode != 0


def clone(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(book.ROOT), str(repo)], check=True)
    for cmd in (["config", "user.email", "t@example.org"], ["config", "user.name", "t"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    return repo


def release(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.release", *args], cwd=repo, capture_output=True, text=True, timeout=300
    )


def test_release_rewrites_every_ref_tests_and_tags(tmp_path):
    repo = clone(tmp_path)
    proc = release(repo, "0.9.1", "--test-command", "test -f pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'version = "0.9.1"' in (repo / "pyproject.toml").read_text()
    assert "branch: v0.9.1" in (repo / "_config.yml").read_text()
    assert "version: 0.9.1" in (repo / "CITATION.cff").read_text()
    for source in (repo / "chapters").glob("*.md"):
        assert "ml-theory-book@v0.9.1" in source.read_text() and "@v0.9.1" in source.with_suffix(".ipynb").read_text()
    tags = subprocess.run(["git", "tag"], cwd=repo, capture_output=True, text=True).stdout.split()
    assert "v0.9.1" in tags
    assert not subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout


def test_release_refuses_a_dirty_tree_a_bad_version_and_a_failing_test(tmp_path):
    repo = clone(tmp_path)
    assert "not X.Y.Z" in release(repo, "1.0").stderr
    failing = release(repo, "0.9.2", "--test-command", "false")
    assert failing.returncode != 0 and "release was not made" in failing.stderr
    assert 'version = "0.9.2"' not in (repo / "pyproject.toml").read_text()  # restored
    (repo / "README.md").write_text("changed\n")
    assert "uncommitted changes" in release(repo, "0.9.3").stderr
    shutil.rmtree(repo)
