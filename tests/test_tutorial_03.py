"""Tutorial 03 (posterior, identifiability, comparison) runs end to end at its small size."""

import pytest

from helpers import run_tutorial


@pytest.mark.slow
@pytest.mark.compile_bound  # measured: faster compiled unoptimised (tests/conftest.py)
def test_tutorial_03_runs(tmp_path):
    out = run_tutorial("03_bayes_and_comparison.py", tmp_path)
    for name in ("posterior.nc", "pairs.png", "comparison/comparison.csv", "comparison/comparison.png"):
        assert (tmp_path / name).exists(), name
    assert "zero Fisher information" in out and "ranking:" in out and "Wilcoxon" in out
    assert "SVI optimum check:" in out and "spreads started at the Hessian diagonal at the start" in out
    import pandas as pd

    fits = pd.read_csv(tmp_path / "comparison" / "fits.csv", keep_default_na=False)
    late = int((fits["converged"].astype(str) == "False").sum())
    assert f"{late} of {len(fits)} training fits had not converged" in out  # unconverged_fits() agrees with fits.csv
