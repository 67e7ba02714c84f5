"""`plasticinfer fit --checkpoint-every/--resume`: a run resumed from its checkpoint ends where an uninterrupted run ends."""

import numpy as np
import pytest
import xarray as xr

from plasticinfer.cli import run


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "sim.nc"
    argv = ["simulate", str(path), "--n-pre", "4", "--n-post", "2", "--trajectories", "2", "--trials", "40", "--no-plot"]
    assert run(argv) == 0
    return path


def _fit(data, out, *extra):
    argv = ["fit", str(data), "--out", str(out), "--variables", "xy", "--max-power", "1", "--restarts", "1", "--quiet", *extra]
    return run(argv)


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(small_data, tmp_path):
    assert _fit(small_data, tmp_path / "full", "--steps", "20") == 0
    part = tmp_path / "part"
    assert _fit(small_data, part, "--steps", "10", "--checkpoint-every", "5") == 0
    assert (part / "checkpoint.nc").is_file()
    assert _fit(small_data, part, "--steps", "20", "--checkpoint-every", "5", "--resume") == 0
    full = xr.load_dataset(tmp_path / "full" / "results.nc")["coefficient"].values
    resumed = xr.load_dataset(part / "results.nc")["coefficient"].values
    np.testing.assert_allclose(resumed, full, rtol=1e-9, atol=1e-12)


def test_resume_without_checkpoint_is_refused(small_data, tmp_path, capsys):
    assert _fit(small_data, tmp_path / "none", "--steps", "5", "--resume") == 2
    err = capsys.readouterr().err
    assert "no checkpoint" in err and len(err.strip().splitlines()) == 1


def test_fly_nuts_resume_without_checkpoint_is_refused(tmp_path, capsys):
    """`plasticinfer fly --hierarchical … --resume` with nothing to resume: one line, usage-error status, before any fit."""
    import subprocess
    import sys

    out = tmp_path / "fly"
    base = [sys.executable, "-m", "plasticinfer.cli", "fly", "--out", str(out), "--quiet"]
    res = subprocess.run([*base, "--hierarchical", "x*r + w", "--resume"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert f"--resume: no checkpoint at {out / 'nuts-checkpoint.npz'}" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()  # the folder this run created is removed again
    assert run(["fly", "--out", str(out), "--quiet", "--checkpoint-every", "10"]) == 2
    assert "add --hierarchical" in capsys.readouterr().err
