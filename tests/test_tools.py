"""tools/: cache keys, the report page, pair checks, and a failing chapter run beside a passing one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from tools import book, pairs, report

HEADER = """---
jupytext:
  formats: ipynb,md:myst
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3 (ipykernel)
  language: python
  name: python3
---
"""


def toy_chapter(path: Path, body: str) -> Path:
    cell = "```{code-cell} ipython3\n:tags: [parameters]\n\nprofile = None\nseed = 0\n```\n\n"
    path.write_text(f"{HEADER}\n# Toy {path.stem}\n\n{cell}```{{code-cell}} ipython3\n{body}\n```\n")
    return path


def test_cache_key_covers_lib_requirements_profile_and_seed(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.py").write_text("x = 1\n")
    (tmp_path / "requirements.txt").write_text("numpy\n")
    source = toy_chapter(tmp_path / "c.md", "print(1)")
    monkeypatch.setattr(book, "ROOT", tmp_path)
    key = book.cache_key(source, "quick", 0)
    assert key == book.cache_key(source, "quick", 0)
    assert key != book.cache_key(source, "full", 0) and key != book.cache_key(source, "quick", 1)
    (tmp_path / "lib" / "a.py").write_text("x = 2\n")
    key2 = book.cache_key(source, "quick", 0)
    assert key2 != key
    (tmp_path / "requirements.txt").write_text("numpy==2\n")
    assert book.cache_key(source, "quick", 0) != key2


def test_report_page_and_provenance_line_count_the_same_verdicts(monkeypatch):
    monkeypatch.setattr(book, "chapter_slugs", lambda: ["toy"])
    monkeypatch.setattr(report, "gpu_rows", lambda: {})
    claim = {
        "claim": "acc | high", "kind": "claim", "row": "toy-a", "value": 0.93, "comparison": "≥", "null": 0.9,
        "threshold": 0.9, "outcome": "holds", "note": "",
    }  # fmt: skip
    finding = {**claim, "claim": "gap", "value": -0.01, "null": 0.0, "threshold": 0.0, "outcome": "fails"}
    big = {**claim, "claim": "big", "value": None, "outcome": "not run", "note": "needs the full profile"}
    verdict = {"row": "toy-a", "claim": "A", "source": "", "verdict": "partly", "why": "", "measured": ["m"]}
    verdicts = [verdict, {**verdict, "row": "toy-b", "verdict": "not tested here"}]
    verdicts = [{**v, "full": "not yet run on a GPU", "data": []} for v in verdicts]
    row = {
        "chapter": "toy", "status": "ok", "profile": "quick", "device": "cpu", "seconds": 12.3,
        "peak_memory_mb": 400.0, "seed": 0, "commit": "abc1234", "claims": [claim, finding, big],
        "verdicts": verdicts,
    }  # fmt: skip
    page = report.render({"chapters": {"toy": row}}, {"toy": "Toy chapter"})
    head = "paper claims: 1 partly, 1 not tested here · checks at this seed: 1 hold, 1 fail (findings), 1 not run"
    assert f"| {{ref}}`Toy chapter <repro-toy>` | ok | quick | 12.3 | 400 | {head} in this profile |" in page
    assert "| this build, profile `quick` (commit `abc1234`, torch None) | 1 | 0 | 1 | 0 | 1 | 1 | 1 | 1 |" in page
    assert "(repro-toy)=" in page and "acc \\| high" in page and "needs the full profile" in page
    assert "| gap | paper claim (toy-a) | -0.01 | ≥ 0 | fails |" in page
    line = report.provenance_line(row)
    assert "`abc1234`" in line and head in line and "<repro-toy>" in line and "reproduced 3" not in line


def test_full_cost_line_says_when_there_is_no_gpu_run():
    assert "Not yet run on a GPU" in report.full_cost_line("toy", {})
    row = {"gpu": "NVIDIA H100", "status": "ok", "seconds": 151.2, "commit": "abc", "stale": True, "claims": []}
    line = report.full_cost_line("toy", {"toy": {**row, "verdicts": []}})
    assert "NVIDIA H100: finished in 151 s" in line and "code has changed since" in line


def test_pair_check_catches_disagreement_and_outputs(tmp_path):
    source = toy_chapter(tmp_path / "p.md", "print(1)")
    assert pairs.problems(source) and "no paired notebook" in pairs.problems(source)[0]
    pairs.sync(source)
    assert pairs.problems(source) == []
    source.write_text(source.read_text().replace("print(1)", "print(2)"))
    assert any("disagree" in p for p in pairs.problems(source))
    pairs.sync(source)
    nb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"][-1]
    code.outputs = [nbformat.v4.new_output("stream", text="2\n")]
    nbformat.write(nb, source.with_suffix(".ipynb"))
    assert any("has outputs" in p for p in pairs.problems(source))


def test_failing_chapter_is_reported_and_others_still_run(tmp_path):
    good = toy_chapter(
        tmp_path / "good.md",
        "import lib\nrun = lib.start(profile, seed)\nlib.check('two is two', 2, kind='exact', close_to=2, tol=0)",
    )
    bad = toy_chapter(tmp_path / "bad.md", "x = 1\nraise RuntimeError('boom in the toy chapter')")
    out, rep = tmp_path / "out", tmp_path / "report.json"
    cmd = [sys.executable, "-m", "tools.execute", str(bad), str(good), "--out", str(out), "--report", str(rep)]
    proc = subprocess.run(cmd, cwd=book.ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "FAILED: bad" in proc.stderr
    rows = {r["chapter"]: r for r in json.loads(rep.read_text())["chapters"]}
    assert rows["good"]["status"] == "ok" and (out / "chapters" / "good.ipynb").exists()
    assert [c["outcome"] for c in rows["good"]["claims"]] == ["holds"]
    assert rows["good"]["seconds"] > 0 and rows["good"]["peak_memory_mb"] > 10 and rows["good"]["device"] == "cpu"
    err = rows["bad"]["error"]
    assert rows["bad"]["status"] == "failed" and err["line"] == "RuntimeError: boom in the toy chapter"
    assert err["cell_index"] is not None and "raise RuntimeError" in err["cell_source"]
    assert not (out / "chapters" / "bad.ipynb").exists()
    # An unchanged passing chapter is skipped on the next run.
    again = subprocess.run(
        cmd[:3] + [str(good), "--out", str(out), "--report", str(rep)],
        cwd=book.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and "cached   good" in again.stdout


def test_chapter_runs_as_a_plain_script(tmp_path):
    source = book.chapter_source("using-this-book")
    out, figures = tmp_path / "summary.json", tmp_path / "figures"
    cmd = [sys.executable, "-m", "tools.script", str(source), "--profile", "quick", "--figures", str(figures)]
    proc = subprocess.run([*cmd, "--out", str(out)], cwd=book.ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(out.read_text())
    assert summary["status"] == "ok" and summary["profile"] == "quick"
    assert [c["outcome"] for c in summary["claims"]].count("holds") >= 3
    assert sorted(p.name for p in figures.glob("*.png")) == ["using-this-book-01.png"]


def test_links_to_chapter_sources_point_at_notebooks_in_the_build():
    from tools.build import link_notebooks

    text = "[](using-this-book.md), [x](chapters/dyck-no-pe.md#sec), [b](../bibliography.md), [o](other.md)"
    out = link_notebooks(text, ["using-this-book", "dyck-no-pe"])
    assert (
        out == "[](using-this-book.ipynb), [x](chapters/dyck-no-pe.ipynb#sec), [b](../bibliography.md), [o](other.md)"
    )


def test_emitted_scripts_run_without_jupytext(tmp_path):
    emit, results = tmp_path / "scripts", tmp_path / "results"
    base = [sys.executable, "-m", "tools.script"]
    assert (
        subprocess.run(
            [*base, "--emit", str(emit), str(book.chapter_source("using-this-book"))], cwd=book.ROOT, timeout=120
        ).returncode
        == 0
    )
    proc = subprocess.run(
        [*base, "--run-emitted", str(emit), "--profile", "quick", "--timeout", "120", "--results", str(results)],
        cwd=book.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads((results / "summary.json").read_text())
    assert row["status"] == "ok" and row["chapter"] == "using-this-book"
    assert (results / "using-this-book.log").exists() and list((results / "figures").glob("*.png"))


def test_script_sets_the_seed_even_when_the_parameters_cell_has_comments(tmp_path):
    from tools.script import to_script

    source = toy_chapter(tmp_path / "c.md", "print('seed is', seed)")
    source.write_text(source.read_text().replace("seed = 0\n", "seed = 0  # seeds everything\n"))
    script = to_script(source, seed=5)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seed is 5" in proc.stdout


def test_code_cell_formatting_fits_the_notebook_column():
    from tools.pairs import CELL_COLUMNS, format_cell

    src = (
        'profile = None  # "quick", "full", or None: BOOK_PROFILE, else "full" with a CUDA GPU and "quick" without\n'
        "# a comment line that is much longer than the eighty-eight columns of a notebook cell, so it is wrapped\n"
        's = "a # inside a string is not a comment"\n'
        "x = dict(alpha=1, beta=2, gamma=3, delta=4, epsilon=5, zeta=6, eta=7, theta=8, iota=9, kappa=10)\n"
    )
    out = format_cell(src)
    assert all(len(line) <= CELL_COLUMNS for line in out.splitlines()), out
    assert format_cell(out) == out  # stable
    assert 's = "a # inside a string is not a comment"' in out and "profile = None" in out
    namespace: dict = {}
    exec(out, namespace)  # still the same program
    assert namespace["x"]["kappa"] == 10 and namespace["profile"] is None


def test_tools_run_directly_use_the_projects_data_and_cache_as_make_does():
    """`python -m tools.seeds` without make must not fall back to offline data the Makefile would not use."""
    env = {k: v for k, v in os.environ.items() if k not in ("BOOK_DATA_DIR", "BOOK_CACHE_DIR")}
    code = "import os; from tools import book; print(os.getenv('BOOK_DATA_DIR')); print(os.getenv('BOOK_CACHE_DIR'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=book.ROOT, env=env, capture_output=True, text=True)
    data, cache = out.stdout.split("\n")[:2]
    shared = book.ROOT.parent / "shared" / "data"
    assert data == (str(shared) if shared.is_dir() else "None") and cache == str(book.BUILD / "cache")
