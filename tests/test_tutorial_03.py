"""Tutorial 03 (posterior, identifiability, comparison) runs end to end at its small size."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorials" / "03_bayes_and_comparison.py"


@pytest.mark.slow
def test_tutorial_03_runs(tmp_path):
    env = dict(os.environ, PLASTICINFER_TUTORIAL_SMALL="1", PLASTICINFER_TUTORIAL_OUT=str(tmp_path), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(TUTORIAL)], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("posterior.nc", "pairs.png", "comparison/comparison.csv", "comparison/comparison.png"):
        assert (tmp_path / name).exists(), name
    out = proc.stdout
    assert "zero Fisher information" in out and "ranking:" in out and "Wilcoxon" in out
