"""lib.checks: every kind of comparison passes and fails, and records reach the report file."""

import json
import math

import pytest

from lib.checks import ClaimNotReproduced, check

CASES = [  # (kwargs, a passing value, a failing value)
    ({"at_least": 0.9}, 0.93, 0.89),
    ({"at_most": 0.1}, 0.05, 0.11),
    ({"between": (0.2, 0.4)}, 0.3, 0.41),
    ({"between": (0.2, 0.4)}, 0.2, 0.19),
    ({"close_to": 1.0, "tol": 0.05}, 1.04, 1.06),
]


@pytest.mark.parametrize(("kwargs", "good", "bad"), CASES)
def test_each_kind_passes_and_fails(kwargs, good, bad, capsys):
    assert check("a claim", good, **kwargs).outcome == "reproduced"
    assert "reproduced: a claim" in capsys.readouterr().out
    with pytest.raises(ClaimNotReproduced, match="NOT reproduced: a claim"):
        check("a claim", bad, **kwargs)


def test_nan_never_passes():
    with pytest.raises(ClaimNotReproduced):
        check("nan", math.nan, at_most=1.0)


def test_readable_line(capsys):
    check("accuracy", 0.93, at_least=0.90)
    assert capsys.readouterr().out.strip() == "✔ reproduced: accuracy: 0.93 ≥ 0.9"


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"at_least": 1, "at_most": 2}, {"close_to": 1.0}, {"at_least": 1, "tol": 0.1}, {"close_to": 1, "tol": -1}],
)
def test_malformed_thresholds_are_errors(kwargs):
    with pytest.raises(TypeError):
        check("x", 1.0, **kwargs)


def test_empty_interval_and_non_number():
    with pytest.raises(ValueError, match="empty"):
        check("x", 1.0, between=(2, 1))
    with pytest.raises(TypeError, match="must be a number"):
        check("x", "high", at_least=1)


def test_records_reach_the_claims_file(monkeypatch, tmp_path):
    path = tmp_path / "claims.jsonl"
    monkeypatch.setenv("BOOK_CLAIMS_FILE", str(path))
    monkeypatch.setenv("BOOK_CHAPTER", "toy")
    check("kept", 2.0, at_least=1.0)
    check("skipped", 0.0, at_least=1.0, skip="needs the full profile")
    check("demo", 2.0, at_least=1.0, record=False)
    with pytest.raises(ClaimNotReproduced):
        check("failed", 0.0, at_least=1.0)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["claim"], r["outcome"]) for r in rows] == [
        ("kept", "reproduced"),
        ("skipped", "skipped"),
        ("failed", "not reproduced"),
    ]
    assert rows[0]["chapter"] == "toy" and rows[0]["threshold"] == "1" and rows[0]["comparison"] == "≥"
