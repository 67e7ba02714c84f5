"""Tutorial 07 (results files, checkpoints, resume) runs end to end at its small size."""

import pytest

from helpers import run_tutorial


@pytest.mark.slow
def test_results_tutorial_runs(tmp_path):
    out = run_tutorial("07_results_and_resume.py", tmp_path)
    assert "resumed == uninterrupted: True" in out
    assert "refused:" in out and "terms: file has 3" in out
    assert "chunked == unchunked: True" in out and "same draws: True" in out
    for f in ("recordings.nc", "fit.ckpt", "fit.nc", "nuts.ckpt"):
        assert (tmp_path / f).exists(), f
