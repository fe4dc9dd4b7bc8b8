"""Seed studies: the local and Slurm paths of tools/seeds.py, and every quick-profile claim backed by >= 8 seeds."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tools import book, seeds

HEADER = """---
jupytext:
  formats: ipynb,md:myst
  text_representation: {extension: .md, format_name: myst, format_version: 0.13}
kernelspec: {display_name: Python 3 (ipykernel), language: python, name: python3}
---
"""


def toy(path: Path, body: str) -> Path:
    params = "```{code-cell} ipython3\n:tags: [parameters]\n\nprofile = None\nseed = 0  # a comment\n```\n\n"
    path.write_text(f"{HEADER}\n# Toy\n\n{params}```{{code-cell}} ipython3\n{body}\n```\n")
    return path


FLAKY = (
    "import lib\nrun = lib.start(profile, seed)\n"
    "lib.check('toy seed is zero', seed, kind='claim', row='t', at_most=0)\n"
    "lib.check('toy seed', seed, kind='claim', row='t', at_least=0)\n"
    "import os\nlib.check('toy cache', '/seeds/' in os.environ['BOOK_CACHE_DIR'], kind='guard', at_least=1)\n"
    "assert seed != 1, 'seed 1 breaks the toy'"
)


def run_seeds(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "tools.seeds", *args],
        cwd=book.ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_parse_seeds():
    assert seeds.parse_seeds("0-3,8") == [0, 1, 2, 3, 8] and seeds.parse_seeds("5") == [5]
    with pytest.raises(ValueError, match="0-7"):
        seeds.parse_seeds("zero")
    with pytest.raises(ValueError, match="empty"):
        seeds.parse_seeds("4-2")


@pytest.mark.book
def test_local_study_records_every_check_and_reports_a_failing_seed(tmp_path):
    flaky = toy(tmp_path / "flaky.md", FLAKY)
    record = tmp_path / "seeds-quick.json"
    args = ["--chapter", "using-this-book", "--chapter", str(flaky), "--seeds", "0-1", "--record", str(record)]
    args += ["--allow-dirty"]  # the toy chapter lives outside the repository
    first = run_seeds(*args, "--jobs", "2")
    assert first.returncode == 1, first.stdout + first.stderr  # one seed failed ...
    assert "FAILED flaky seed 1" in first.stdout and "seed 1 breaks the toy" in first.stdout
    runs = json.loads(record.read_text())["runs"]
    assert runs["flaky"]["1"]["status"] == "failed" and runs["flaky"]["0"]["status"] == "ok"  # ... the other kept
    # a claim that fails does not stop the seed: the claim after it is still recorded (BOOK_CLAIMS_DEFER)
    outcomes = {c["claim"]: c["outcome"] for c in runs["flaky"]["1"]["claims"]}
    assert outcomes == {"toy seed is zero": "fails", "toy seed": "holds", "toy cache": "holds"}
    assert {s: r["status"] for s, r in runs["using-this-book"].items()} == {"0": "ok", "1": "ok"}
    row = runs["using-this-book"]["1"]
    assert row["seed"] == 1 and row["seconds"] > 0 and row["peak_memory_mb"] > 0 and row["commit"]
    claim = row["claims"][0]
    assert set(claim) == set(seeds.CLAIM_FIELDS) and row["threads"] == 1  # one thread per job, as CI
    # seed 1 really ran with seed 1: its values differ from seed 0's
    assert claim["value"] != runs["using-this-book"]["0"]["claims"][0]["value"]
    again = run_seeds(*args)
    assert "1 job(s) to run, 3 already recorded" in again.stdout  # only the failed job runs again
    assert json.loads(record.read_text())["runs"]["using-this-book"] == runs["using-this-book"]


STUBS = {
    "sbatch": """#!/usr/bin/env bash
# Stub sbatch: keep the submission script, run it in the background as Slurm would, print the job id.
n=$(( $(ls "$STUB_DIR"/job-*.sh 2>/dev/null | wc -l) + 1000 ))
cp "$1" "$STUB_DIR/job-$n.sh"
folder=$(grep -o "submitit.core._submit [^ ]*" "$1" | awk '{print $2}')
( # as on a cluster, the job starts after sbatch has answered and submitit has named its files by the id
  for _ in $(seq 300); do [ -e "$folder/${n}_submitted.pkl" ] && break; sleep 0.1; done
  SLURM_JOB_ID=$n SLURM_NTASKS=1 SLURM_JOB_NUM_NODES=1 SLURM_NODEID=0 SLURM_PROCID=0 SLURM_LOCALID=0 \\
  SLURM_JOB_NODELIST=node1 bash "$1" > "$STUB_DIR/job-$n.log" 2>&1; touch "$STUB_DIR/done-$n" ) > /dev/null 2>&1 &
echo "Submitted batch job $n"
""",
    "srun": """#!/usr/bin/env bash
# Stub srun: drop srun's own options, run the command with its output where --output asks.
out=/dev/null; err=
while [[ "$1" == --* ]]; do
  case "$1" in --output) out=$2; shift 2;; --error) err=$2; shift 2;; *) shift;; esac
done
out=${out//%j/$SLURM_JOB_ID}; out=${out//%t/$SLURM_PROCID}; err=${err//%j/$SLURM_JOB_ID}; err=${err//%t/$SLURM_PROCID}
exec "$@" > "$out" 2> "${err:-$out}"
""",
    "sacct": """#!/usr/bin/env bash
echo "JobID|State|NodeList"
while [ $# -gt 0 ]; do
  if [ "$1" = "-j" ]; then
    if [ -e "$STUB_DIR/done-$2" ]; then echo "$2|COMPLETED|node1"; else echo "$2|RUNNING|node1"; fi; shift
  fi
  shift
done
""",
    "squeue": "#!/usr/bin/env bash\necho JOBID\n",
    "scancel": "#!/usr/bin/env bash\nexit 0\n",
}


@pytest.mark.book
def test_slurm_path_submits_what_the_flags_ask(tmp_path):
    stub_dir, bin_dir = tmp_path / "slurm", tmp_path / "bin"
    stub_dir.mkdir()
    bin_dir.mkdir()
    for name, text in STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    chapter = toy(
        tmp_path / "toy.md",
        "import lib\nrun = lib.start(profile, seed)\nlib.check('toy seed', seed, kind='guard', at_least=0)",
    )
    record = tmp_path / "seeds-quick.json"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STUB_DIR": str(stub_dir)}
    proc = run_seeds(
        "--chapter", str(chapter), "--seeds", "2", "--executor", "slurm", "--partition", "testq",
        "--gpus-per-job", "2", "--time-min", "7", "--cpus", "3", "--record", str(record), "--allow-dirty", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (script,) = stub_dir.glob("job-*.sh")
    text = script.read_text()
    for want in (
        "#SBATCH --partition=testq",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --time=7",
        "#SBATCH --cpus-per-task=3",
    ):
        assert want in text, f"{want!r} not in the submission script:\n{text}"
    row = json.loads(record.read_text())["runs"]["toy"]["2"]
    assert row["status"] == "ok" and row["claims"][0]["value"] == 2.0


def test_unknown_chapter_is_a_clear_error():
    proc = run_seeds("--chapter", "no-such-chapter", "--seeds", "0")
    assert proc.returncode != 0 and "no chapter 'no-such-chapter'" in proc.stderr


def test_a_study_refuses_uncommitted_code(tmp_path, monkeypatch):
    monkeypatch.setattr(seeds, "dirty_files", lambda chapters: ["lib/spn.py"])
    opts = seeds.argparse.Namespace(force=True, profile="quick", allow_dirty=False)
    with pytest.raises(SystemExit, match="committed code.*lib/spn.py"):
        seeds.study([("toy", book.chapter_source("using-this-book"))], [0], opts, tmp_path / "r.json")


def test_study_key_covers_code_not_prose(tmp_path, monkeypatch):
    source = tmp_path / "toy.md"
    toy(source, "import lib\nfrom lib import spn\nx = 1")
    key = book.study_key(source, "quick", 0)
    assert {p.name for p in book.study_files(source)} >= {"toy.md", "spn.py", "binary_data.py", "checks.py"}
    assert "induction.py" not in {p.name for p in book.study_files(source)}
    toy(source, "import lib\nfrom lib import spn\nx = 1").write_text(source.read_text() + "\nMore prose.\n")
    assert book.study_key(source, "quick", 0) == key  # a text edit does not stale a study
    toy(source, "import lib\nfrom lib import spn\n\nx = 1  # a comment")
    assert book.study_key(source, "quick", 0) == key  # nor a comment or formatting
    toy(source, "import lib\nfrom lib import spn\nx = 2")
    assert book.study_key(source, "quick", 0) != key and book.study_key(source, "quick", 1) != key


def test_records_file_is_derived_from_the_committed_records():
    """lib/records.json (what chapters read their thresholds from) is exactly what the records under reports/ give."""
    from lib import checks

    gpu = json.loads(seeds.GPU_RECORD.read_text()) if seeds.GPU_RECORD.exists() else None
    want = seeds.derive_records(seeds.load_record(seeds.record_path("quick")), gpu)
    have = json.loads(checks.RECORDS_FILE.read_text())
    assert have == json.loads(json.dumps(want)), "lib/records.json is stale: run `python -m tools.seeds --derive`"


def test_every_study_is_at_the_chapters_code():
    """A chapter's recorded study was run on the code it has today (its key), unless declared pending."""
    stale = seeds.stale_studies(seeds.load_record(seeds.record_path("quick")))
    stale = {slug: s for slug, s in stale.items() if slug not in seeds.STUDY_PENDING}
    assert not stale, f"studies stale for their chapter's code (seeds): {stale}; run `make seeds` and commit reports/"


def executed_and_studied(built_book, slug: str) -> tuple[dict, dict]:
    """Return a chapter's row of this build's execution report and its checks in the recorded study, by name."""
    row = built_book.report.get(slug)
    assert row is not None, f"{slug} missing from the execution report"
    return row, {r["claim"]: r for r in seeds.summary(seeds.load_record(seeds.record_path("quick")), [slug])}


@pytest.mark.book
@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_every_quick_threshold_is_derived_from_the_study(built_book, slug):
    """Each check's threshold in this build is what lib.checks.threshold gives from the record and its null."""
    from lib import checks

    row, studied = executed_and_studied(built_book, slug)
    for c in row["claims"]:
        if c["outcome"] == "not run" or slug in seeds.STUDY_PENDING:
            continue
        got = studied.get(c["claim"])
        values = {str(k): v for k, v in got["values"].items()} if got else None
        want = checks.threshold(c["kind"], c["comparison"], c["null"], values)
        assert c["threshold"] == want.value, f"{slug}: {c['claim']!r}: threshold {c['threshold']} != {want.value}"


@pytest.mark.book
@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_every_quick_claim_has_a_seed_study(built_book, slug):
    """Staleness: each claim a chapter checks in the quick profile has >= 8 seeds in reports/seeds-quick.json."""
    row, studied = executed_and_studied(built_book, slug)
    how = f"run the study: `make seeds C={slug}` (or `python -m tools.seeds --chapter {slug}`) and commit reports/"
    if slug in seeds.STUDY_PENDING:  # declared pending: listed on the robustness page; the entry must still be true
        n = min((r["checked"] for r in studied.values()), default=0)
        assert n < seeds.STUDY_MIN_SEEDS, f"{slug}: its study is complete; remove it from seeds.STUDY_PENDING"
        assert slug in (built_book.html / "robustness.html").read_text()
        return
    for claim in row["claims"]:
        if claim["outcome"] == "not run":
            continue
        got = studied.get(claim["claim"])
        n = got["checked"] if got else 0
        assert n >= seeds.STUDY_MIN_SEEDS, (
            f"{slug}: the claim {claim['claim']!r} has {n} seed(s) in reports/seeds-quick.json "
            f"(needs {seeds.STUDY_MIN_SEEDS}); {how}"
        )
