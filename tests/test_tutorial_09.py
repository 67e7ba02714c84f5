"""Tutorial 09 (behavioural comparison on mohanta2022) runs end to end at its small size."""

import pytest

from helpers import run_tutorial


@pytest.mark.slow
@pytest.mark.compile_bound  # measured: faster compiled unoptimised (tests/conftest.py)
def test_tutorial_09_runs(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("PLASTICINFER_DATA_DIR", str(shared_data))  # reads the real fly data: skipped on a clone without it
    out = run_tutorial("09_behaviour_comparison.py", tmp_path, timeout=1200)
    for f in ["normalized_likelihood.csv", "comparison.csv", "per_subject.csv"]:
        assert (tmp_path / f).exists(), f
    assert "rule from data: L1 =" in out and "signed-rank p =" in out
    assert "DF · softmax (population)" in out and "fitted spread σ across flies" in out
