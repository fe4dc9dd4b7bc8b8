"""lib.checks: outcomes and kinds, the threshold rule against hand-worked cases, findings, verdicts, records."""

import json
import math

import pytest

from lib import checks
from lib.checks import ClaimNotReproduced, Row, check, threshold, verdicts

CASES = [  # (kwargs, a holding value, a failing value)
    ({"at_least": 0.9}, 0.93, 0.89),
    ({"at_most": 0.1}, 0.05, 0.11),
    ({"between": (0.2, 0.4)}, 0.3, 0.41),
    ({"between": (0.2, 0.4)}, 0.2, 0.19),
    ({"close_to": 1.0, "tol": 0.05}, 1.04, 1.06),
]


@pytest.fixture(autouse=True)
def no_study(monkeypatch, tmp_path):
    """Every test starts with no recorded study and no checks of an earlier test."""
    monkeypatch.setattr(checks, "RECORDS_FILE", tmp_path / "records.json")
    monkeypatch.delenv("BOOK_CLAIMS_DEFER", raising=False)
    monkeypatch.delenv("BOOK_SMOKE", raising=False)
    monkeypatch.setenv("BOOK_CHAPTER", "toy")
    checks._SESSION.clear()
    checks._records.cache_clear()


def study(tmp_path, values: dict[str, list[float]], null=0.0, comparison="≥", kind="claim", row="toy-a"):
    """Write a records file in which the toy chapter's checks have these values over seeds 0..n-1."""
    data = {
        "quick": {
            "toy": {
                "commits": ["abc"],
                "seeds": list(range(8)),
                "checks": {
                    name: {
                        "kind": kind,
                        "row": row,
                        "comparison": comparison,
                        "null": null,
                        "values": {str(i): v for i, v in enumerate(vs)},
                    }
                    for name, vs in values.items()
                },
            }
        }
    }
    (tmp_path / "records.json").write_text(json.dumps(data))
    checks._records.cache_clear()


@pytest.mark.parametrize(("kwargs", "good", "bad"), CASES)
def test_each_comparison_holds_and_fails(kwargs, good, bad, capsys):
    assert check("a claim", good, kind="claim", row="r", **kwargs).outcome == "holds"
    assert "holds [paper claim]: a claim" in capsys.readouterr().out
    with pytest.raises(ClaimNotReproduced, match=r"fails \[paper claim\]: a claim"):
        check("a claim", bad, kind="claim", row="r", **kwargs)


def test_nan_never_holds():
    with pytest.raises(ClaimNotReproduced):
        check("nan", math.nan, kind="guard", at_most=1.0)


def test_readable_line_names_the_kind(capsys):
    check("accuracy", 0.93, kind="control", at_least=0.90)
    out = capsys.readouterr().out.strip()
    assert out == "✔ holds [control]: accuracy: 0.93 ≥ 0.9  (no seed study: threshold at the null)"


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"at_least": 1, "at_most": 2}, {"close_to": 1.0}, {"at_least": 1, "tol": 0.1}, {"close_to": 1, "tol": -1}],
)
def test_malformed_thresholds_are_errors(kwargs):
    with pytest.raises(TypeError):
        check("x", 1.0, kind="guard", **kwargs)


def test_kind_and_row_are_declared():
    with pytest.raises(TypeError, match="kind"):
        check("x", 1.0, at_least=0)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="kind must be one of"):
        check("x", 1.0, kind="skipped", at_least=0)
    with pytest.raises(TypeError, match="row"):
        check("x", 1.0, kind="claim", at_least=0)


def test_a_measured_value_is_never_not_run():
    with pytest.raises(TypeError, match="never 'not run'"):
        check("x", 0.3, kind="claim", row="r", at_least=0, not_run="needs the full profile")
    with pytest.raises(TypeError, match="not_run"):
        check("x", None, kind="claim", row="r", at_least=0)
    assert check("x", None, kind="claim", row="r", at_least=0, not_run="full only").outcome == "not run"


def test_threshold_rule_by_hand():
    seeds = {str(i): v for i, v in enumerate([0.10, 0.20, 0.30, 0.15, 0.12, 0.40, 0.33, 0.21])}
    # min 0.10, spread 0.30: 0.10 - 0.075 = 0.025, two significant digits down: 0.025
    assert threshold("claim", "≥", 0.0, seeds).value == 0.025
    assert threshold("claim", "≥", 0.05, seeds).value == 0.05  # never past the null ... towards looser
    # at_most, mirrored: max 0.40 + 0.075 = 0.475 -> 0.48; the null 0.5 is looser, so 0.48
    assert threshold("claim", "≤", 0.5, seeds).value == 0.48
    # exact checks and intervals never move; fewer than 8 seeds or no study: the null
    assert threshold("exact", "≤", 1e-9, seeds).value == 1e-9
    assert threshold("claim", "∈", [0.0, 1.0], seeds).value == [0.0, 1.0]
    assert threshold("claim", "≥", 0.0, dict(list(seeds.items())[:7])).value == 0.0
    assert threshold("claim", "≥", 0.0, None).value == 0.0


def test_rounding_outward():
    assert checks.round_out(0.0734, down=True) == 0.073 and checks.round_out(0.0734, down=False) == 0.074
    assert checks.round_out(-0.0312, down=True) == -0.032 and checks.round_out(123.4, down=True) == 120
    assert checks.round_out(0.25, down=True) == 0.25


def test_a_claim_failing_on_some_seeds_is_a_finding(tmp_path, capsys):
    values = [-0.10, 0.20, 0.30, 0.15, 0.12, 0.40, 0.33, 0.21]  # fails on seed 0 at the null 0
    study(tmp_path, {"A beats B": values})
    derived = threshold("claim", "≥", 0.0, {str(i): v for i, v in enumerate(values)})
    assert derived.finding and derived.value == 0.0 and derived.guard == -0.23  # -0.1 - 0.125 -> -0.23
    r = check("A beats B", -0.05, kind="claim", row="toy-a", at_least=0.0)  # fails, inside the range: recorded
    assert r.outcome == "fails" and (r.seeds_holding, r.seeds_studied) == (7, 8)
    assert "holds on 7 of 8 seeds in the study" in capsys.readouterr().out
    with pytest.raises(ClaimNotReproduced):  # far outside the study's range: a regression stops the chapter
        check("A beats B", -0.5, kind="claim", row="toy-a", at_least=0.0)


def test_a_claim_holding_on_every_seed_is_tightened(tmp_path):
    study(tmp_path, {"A beats B": [0.10, 0.20, 0.30, 0.15, 0.12, 0.40, 0.33, 0.21]})
    assert check("A beats B", 0.03, kind="claim", row="toy-a", at_least=0.0).threshold == 0.025
    with pytest.raises(ClaimNotReproduced):  # the claim still holds at 0.01, but weaker than every seed: a regression
        check("A beats B", 0.01, kind="claim", row="toy-a", at_least=0.0)


def test_full_profile_uses_the_null(tmp_path, monkeypatch):
    import lib

    study(tmp_path, {"A beats B": [0.10, 0.20, 0.30, 0.15, 0.12, 0.40, 0.33, 0.21]})
    lib.start("full", 0, chapter="toy", quiet=True)
    try:
        assert check("A beats B", 0.01, kind="claim", row="toy-a", at_least=0.0).threshold == 0.0
    finally:
        lib.start("quick", 0, quiet=True)


def test_defer_records_without_raising(monkeypatch):
    monkeypatch.setenv("BOOK_CLAIMS_DEFER", "1")
    assert check("x", -1.0, kind="claim", row="r", at_least=0.0).outcome == "fails"


def test_smoke_records_every_check_as_not_run(monkeypatch):
    monkeypatch.setenv("BOOK_SMOKE", "1")
    r = check("x", 123.0, kind="claim", row="r", at_least=1e9)
    assert r.outcome == "not run" and r.note == checks.SMOKE_NOTE and r.value is None
    own = check("y", None, kind="claim", row="r", at_least=0, not_run="the paper's data only")
    assert own.note == "the paper's data only"  # a check the full profile never computes keeps its own reason


def rows_of(**kinds_outcomes):
    return [
        checks.ClaimRecord(name, kind, "r", 1.0, "≥", 0.0, 0.0, outcome, held, n)
        for name, (kind, outcome, held, n) in kinds_outcomes.items()
    ]


@pytest.mark.parametrize(
    ("records", "verdict"),
    [
        (rows_of(a=("claim", "holds", 8, 8), b=("exact", "holds", None, None)), "reproduced"),
        (rows_of(a=("claim", "holds", 8, 8), b=("claim", "fails", 5, 8)), "partly"),
        (rows_of(a=("claim", "fails", 0, 8)), "not reproduced"),
        (rows_of(a=("contrary", "holds", 8, 8)), "not reproduced"),
        (rows_of(a=("claim", "holds", 8, 8), b=("contrary", "holds", 8, 8)), "partly"),
        (rows_of(a=("claim", "not run", None, None)), "not tested here"),
        (rows_of(a=("control", "holds", 8, 8)), "not tested here"),
        (rows_of(a=("claim", "holds", None, None)), "reproduced"),  # no study: this run, one seed
    ],
)
def test_row_verdict_is_derived(records, verdict):
    assert checks.row_verdict(Row("r", "a claim"), records)[0] == verdict


def test_cap_only_lowers_a_verdict():
    held = rows_of(a=("claim", "holds", 8, 8))
    assert checks.row_verdict(Row("r", "c", cap=("partly", "1/100 of the scale")), held) == (
        "partly",
        "1/100 of the scale",
    )
    failed = rows_of(a=("claim", "fails", 0, 8))
    assert checks.row_verdict(Row("r", "c", cap=("partly", "x")), failed)[0] == "not reproduced"


def test_verdicts_record_and_refuse_orphans(monkeypatch, tmp_path):
    path = tmp_path / "claims.jsonl"
    monkeypatch.setenv("BOOK_CLAIMS_FILE", str(path))
    check("kept", 2.0, kind="claim", row="toy-a", at_least=1.0)
    check("demo", 2.0, kind="claim", row="toy-z", at_least=1.0, record=False)  # kept out of report and table
    check("not here", None, kind="claim", row="toy-b", at_least=1.0, not_run="full profile only")
    with pytest.raises(ValueError, match="no check"):
        verdicts([Row("toy-a", "A"), Row("toy-b", "B"), Row("toy-c", "C")])
    entries = verdicts([Row("toy-a", "A"), Row("toy-b", "B"), Row("toy-c", "C", not_tested="no data here")])
    assert [e["verdict"] for e in entries] == ["reproduced", "not tested here", "not tested here"]
    assert checks.headline(entries) == "paper claims: 1 reproduced, 2 not tested here"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["record"] for x in lines].count("check") == 2 and [x["record"] for x in lines].count("verdict") == 3
    check("orphan", 2.0, kind="claim", row="toy-q", at_least=1.0)
    with pytest.raises(ValueError, match="rows it does not have"):
        verdicts([Row("toy-a", "A")])


def test_verdict_table_puts_the_verdict_second():
    check("kept", 2.0, kind="claim", row="toy-a", at_least=1.0, data="synthetic data (offline fallback)")
    table = checks.verdict_markdown(verdicts([Row("toy-a", "A claim", source="v2")]), "quick")
    header, _, row = table.splitlines()
    assert header.split("|")[2].strip().startswith("verdict")
    assert "**reproduced**" in row.split("|")[2] and "offline fallback" in row and "A claim (v2)" in row


def test_a_row_of_the_books_own_is_no_claim_of_the_paper():
    """A reading that goes beyond the paper gets its own table in plain words and is not counted in the headline."""
    check("kept", 2.0, kind="claim", row="toy-a", at_least=1.0)
    check("ours", 0.5, kind="contrary", row="toy-own", at_most=1.0)  # asserts the reading fails
    entries = verdicts([Row("toy-a", "A claim"), Row("toy-own", "Our reading", extension="not in the paper")])
    assert [e["verdict"] for e in entries] == ["reproduced", "not reproduced"]
    assert checks.headline(entries) == "paper claims: 1 reproduced"
    paper, own = checks.verdict_markdown(entries, "quick").split("\n\n")
    assert "**reproduced**" in paper and "Our reading" not in paper
    assert own.startswith("| beyond the paper") and "| does not hold |" in own and "(not in the paper)" in own
    assert "reproduced" not in own.split("\n")[2]
