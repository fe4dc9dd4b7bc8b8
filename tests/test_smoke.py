"""The full profile's smoke run: every chapter, full configuration, loops cut short, on the CPU (issue: the full
profile is verified wherever it can be). It fails on any exception of a full code path, and on a check that the
quick profile leaves "not run" while the full profile never computes it either (a skip that hides a claim)."""

import json
import os
import subprocess
import sys

import pytest

from lib.checks import SMOKE_NOTE
from tools import book

pytestmark = pytest.mark.book
SLUGS = book.chapter_slugs()
SMOKE_SECONDS = 300  # per chapter, on one thread of a 2-core CI machine (measured: 25 to 280 s under load)
SMOKE_REPORT = book.REPORTS / "smoke.json"


@pytest.fixture(scope="session")
def smoke_run() -> dict:
    """Run every chapter's smoke (cached when unchanged, as the quick run is); return the report by chapter."""
    env = {k: v for k, v in os.environ.items() if k != "BOOK_PROFILE"}
    proc = subprocess.run(
        [sys.executable, "-m", "tools.execute", "--smoke"], cwd=book.ROOT, env=env, capture_output=True, text=True
    )
    print(proc.stdout[-5000:], proc.stderr[-3000:], sep="\n")
    rows = json.loads(SMOKE_REPORT.read_text())["chapters"] if SMOKE_REPORT.exists() else []
    return {r["chapter"]: r for r in rows}


@pytest.mark.parametrize("slug", SLUGS)
def test_full_profile_smoke_reaches_the_end(smoke_run, slug):
    row = smoke_run.get(slug)
    assert row is not None, f"{slug} missing from the smoke report"
    err = row.get("error") or {}
    assert row["status"] == "ok", f"{slug}: the full profile fails in cell {err.get('cell_index')}: {err.get('line')}"
    assert row["profile"] == "full" and row["device"] == "cpu"
    assert row["seconds"] <= SMOKE_SECONDS, f"{slug}: smoke took {row['seconds']} s (cap its sizes in smoke_caps)"
    measured = [c["claim"] for c in row["claims"] if c["outcome"] != "not run"]
    assert not measured, f"{slug}: a smoke run measures nothing, yet records {measured}"


@pytest.mark.parametrize("slug", SLUGS)
def test_no_check_is_skipped_in_every_profile(built_book, smoke_run, slug):
    """A check not run in quick must be one the full profile computes (its smoke note is the runner's own)."""
    quick, smoke = built_book.report.get(slug), smoke_run.get(slug)
    assert quick is not None and smoke is not None
    notes = {c["claim"]: c["note"] for c in smoke["claims"]}
    never = [
        c["claim"]
        for c in quick["claims"]
        if c["outcome"] == "not run" and c["claim"] in notes and notes[c["claim"]] != SMOKE_NOTE
    ]
    assert not never, f"{slug}: not run in quick and never computed in full either: {never}"
    # a check whose name carries a size (r = 8 in quick, r = 16 in full) is matched by its row
    rows = {c["row"] for c in smoke["claims"] if c.get("row") and c["note"] == SMOKE_NOTE}
    missing = [
        c["claim"]
        for c in quick["claims"]
        if c["outcome"] == "not run" and c["claim"] not in notes and not (c.get("row") and c["row"] in rows)
    ]
    assert not missing, f"{slug}: not run in quick and absent from the full profile: {missing}"
