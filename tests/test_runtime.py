"""lib.runtime: profile resolution, devices, seeds, provenance."""

import json

import numpy as np
import pytest
import torch

from lib import runtime


def test_profile_parameter_wins_over_environment(monkeypatch):
    monkeypatch.setenv("BOOK_PROFILE", "full")
    assert runtime.resolve_profile("quick") == "quick"


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("BOOK_PROFILE", "full")
    assert runtime.resolve_profile(None) == "full"


def test_quick_is_the_default_on_every_device(monkeypatch):
    """A notebook opened anywhere (Colab with a GPU included) runs quick unless full is asked for."""
    monkeypatch.delenv("BOOK_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_profile(None) == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.resolve_profile(None) == "quick"
    assert runtime.resolve_profile("full") == "full"
    monkeypatch.setenv("BOOK_PROFILE", "full")
    assert runtime.resolve_profile(None) == "full" and runtime.resolve_profile("quick") == "quick"


@pytest.mark.parametrize("bad", ["fast", "QUICKER", "gpu"])
def test_unknown_profile_is_a_clear_error(bad, monkeypatch):
    monkeypatch.delenv("BOOK_PROFILE", raising=False)
    with pytest.raises(ValueError, match="valid profiles are 'quick', 'full'"):
        runtime.resolve_profile(bad)
    monkeypatch.setenv("BOOK_PROFILE", bad)
    with pytest.raises(ValueError, match="BOOK_PROFILE"):
        runtime.resolve_profile(None)


def test_device_default_and_override(monkeypatch):
    monkeypatch.delenv("BOOK_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    assert runtime.device() == torch.device("cpu")
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    assert runtime.device() == torch.device("mps")
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    assert runtime.device() == torch.device("cpu")


def test_absent_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    monkeypatch.setenv("BOOK_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="not available on this machine; available: cpu"):
        runtime.device()
    with pytest.raises(ValueError, match="Unknown device"):
        runtime.device("tpu")


def test_seed_everything_repeats_numbers():
    runtime.seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))  # noqa: NPY002 (the legacy global RNG is what it seeds)
    runtime.seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_start_records_provenance(monkeypatch, tmp_path, capsys):
    out = tmp_path / "run.json"
    monkeypatch.setenv("BOOK_RUN_FILE", str(out))
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    monkeypatch.setenv("BOOK_THREADS", "1")
    run = runtime.start("quick", 7)
    assert run.profile == "quick" and run.seed == 7 and run.threads == 1 and not run.full
    record = json.loads(out.read_text())
    assert record["device"] == "cpu" and record["seed"] == 7 and record["torch_version"] == torch.__version__
    assert "profile=quick" in capsys.readouterr().out
    with pytest.raises(TypeError, match="seed must be an int"):
        runtime.start("quick", "0")


def test_one_thread_restores_the_setting():
    before = torch.get_num_threads()
    inside = runtime.one_thread(torch.get_num_threads)()
    assert inside == 1 and torch.get_num_threads() == before
