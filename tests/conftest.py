"""Shared fixtures: the executed and built book (once per test session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools import book


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one torch thread is faster, above all on a shared machine (restored afterwards)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@dataclass
class BuiltBook:
    execute_code: int
    execute_output: str
    build_code: int
    build_output: str
    report: dict
    html: Path


@pytest.fixture(scope="session")
def built_book() -> BuiltBook:
    """Execute every chapter (quick profile, cached when unchanged) and build the HTML strictly."""
    env = {**os.environ, "BOOK_PROFILE": "quick"}
    ex = subprocess.run(
        [sys.executable, "-m", "tools.execute", "--profile", "quick"],
        cwd=book.ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    bu = subprocess.run([sys.executable, "-m", "tools.build"], cwd=book.ROOT, env=env, capture_output=True, text=True)
    print(ex.stdout, ex.stderr, bu.stdout[-5000:], bu.stderr[-5000:], sep="\n")
    rows = json.loads(book.REPORT_FILE.read_text())["chapters"] if book.REPORT_FILE.exists() else []
    return BuiltBook(
        ex.returncode,
        ex.stdout + ex.stderr,
        bu.returncode,
        bu.stdout + bu.stderr,
        {r["chapter"]: r for r in rows},
        book.HTML,
    )


@pytest.fixture(scope="session")
def student_edition(built_book) -> Path:
    """Build the student edition (notebooks and HTML) once; return its folder."""
    from tools import student

    proc = subprocess.run([sys.executable, "-m", "tools.student"], cwd=book.ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return student.STUDENT
