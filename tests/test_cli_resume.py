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


def test_resume_from_another_fit_says_what_to_do_on_the_command_line(small_data, tmp_path, capsys):
    part = tmp_path / "part"
    assert _fit(small_data, part, "--steps", "5", "--checkpoint-every", "5") == 0
    capsys.readouterr()
    assert _fit(small_data, part, "--steps", "10", "--checkpoint-every", "5", "--resume", "--l1", "0.1") == 2
    err = capsys.readouterr().err
    assert "belongs to a different fit" in err and "run without --resume to start afresh" in err  # not "resume=False"
    assert len(err.strip().splitlines()) == 1


def test_fly_nuts_resume_without_checkpoint_is_refused(tmp_path, capsys):
    """`plasticinfer fly --hierarchical … --resume` with nothing to resume: one line, usage-error status, before any fit."""
    import subprocess
    import sys

    out = tmp_path / "fly"
    base = [sys.executable, "-m", "plasticinfer.cli", "fly", "--out", str(out), "--quiet"]
    res = subprocess.run([*base, "--hierarchical", "x*r + w", "--resume"], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 2, res.stderr
    assert f"--resume: no checkpoint at {out / 'nuts-checkpoint.npz'}" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()  # the folder this run created is removed again
    assert run(["fly", "--out", str(out), "--quiet", "--checkpoint-every", "10"]) == 2
    assert "add --hierarchical" in capsys.readouterr().err


@pytest.mark.slow  # three small fly analyses with a hierarchical NUTS fit each
@pytest.mark.compile_bound  # measured: faster compiled unoptimised (tests/conftest.py)
def test_fly_nuts_interrupted_then_resumed_equals_uninterrupted(tmp_path, monkeypatch, capsys):
    """`plasticinfer fly --hierarchical … --checkpoint-every 5`, Ctrl-C in its third chunk, then `--resume`:
    the posterior written equals the one of a run never interrupted (and never checkpointed)."""
    import jax
    from helpers import interrupt_nuts_chunk

    import plasticinfer as pi
    from plasticinfer._io import write_netcdf

    syn = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.6, "w": -0.1}), key=jax.random.key(5), n_subjects=2,
                              block_probabilities=((0.2, 0.8), (0.8, 0.2)), trials_per_block=20, inverse_temperature=1.0)  # fmt: skip
    ds = pi.behaviour_dataset(
        [np.asarray(syn.data.observations[i]) for i in range(2)], [np.asarray(syn.data.inputs["reward"][i]) for i in range(2)],
        block=[np.asarray(syn.block[i]) for i in range(2)], subjects=["fly_a", "fly_b"],
    )  # fmt: skip
    write_netcdf(ds, tmp_path / "flies.nc")
    argv = ["fly", str(tmp_path / "flies.nc"), "-H", "x*r + w", "--hierarchical", "x*r + w", "--warmup", "10", "--draws", "6",
            "--target-accept", "0.85", "--steps", "5", "--restarts", "1", "--no-in-sample", "--quiet"]  # fmt: skip
    assert run([*argv, "--out", str(tmp_path / "reference")]) == 0
    assert "target_accept=0.85" in xr.load_dataset(tmp_path / "reference" / "posterior.nc", group="posterior").attrs["method"]
    report = (tmp_path / "reference" / "report.md").read_text()
    assert "WARNING: the sampler has not converged" in report  # 6 draws: R-hat and ESS fail, and the advice follows
    assert "NUTS(warmup=" not in report and "--warmup 1000 --draws 1000" in report  # in command-line terms

    out = tmp_path / "resumed"
    interrupt_nuts_chunk(monkeypatch, 2)
    capsys.readouterr()
    assert run([*argv, "--out", str(out), "--checkpoint-every", "5"]) == 130
    assert "rerun the same command with --resume" in capsys.readouterr().err
    assert (out / "nuts-checkpoint.npz").is_file() and not (out / "posterior.nc").exists()
    monkeypatch.undo()
    assert run([*argv, "--out", str(out), "--checkpoint-every", "5", "--resume"]) == 0
    for group in ("posterior", "sample_stats"):
        ref = xr.load_dataset(tmp_path / "reference" / "posterior.nc", group=group)
        got = xr.load_dataset(out / "posterior.nc", group=group)
        assert ("theta_mu" in ref) if group == "posterior" else ("lp" in ref)
        for name in ref.data_vars:
            if name != "seconds":
                np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=f"{group}/{name}")
