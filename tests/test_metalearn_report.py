"""Paired evaluation statistics, the whole experiment at a tiny size, its files, and the CLI command."""

import jax
import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import plasticinfer as pi
from plasticinfer.cli import app
from plasticinfer.metalearn import LearnerEvaluation

TINY = dict(
    hidden=(6,), n_way=2, k_shot=2, n_query=2, steps=4, meta_batch=2, eval_every=2,
    eval_episodes=6, tune_episodes=4, validation_episodes=4,
)


def test_learner_evaluation_statistics_against_numpy():
    rng = np.random.default_rng(0)
    acc = rng.uniform(size=(3, 40))
    ev = LearnerEvaluation(("a", "b", "c"), acc, rng.uniform(size=(3, 40)), rng.uniform(size=(3, 40, 5)))
    assert ev.n_episodes == 40
    assert ev.mean("b") == pytest.approx(acc[1].mean())
    assert ev.se("b") == pytest.approx(acc[1].std(ddof=1) / np.sqrt(40))
    d = acc[2] - acc[0]
    m, se = ev.difference("c", "a")
    assert m == pytest.approx(d.mean()) and se == pytest.approx(d.std(ddof=1) / np.sqrt(40))
    assert ev.gap_closed("c", "a", "b") == pytest.approx((acc[2].mean() - acc[0].mean()) / (acc[1].mean() - acc[0].mean()))
    assert ev.table().loc["a", "accuracy"] == pytest.approx(acc[0].mean())
    with pytest.raises(pi.ModelError, match="no learner 'z'"):
        ev.mean("z")


@pytest.fixture(scope="module")
def tiny_report():  # ~20 s of compilation: tests using it are marked slow
    return pi.metalearn.feedback_alignment_experiment(key=jax.random.key(3), progress=False, threshold=1e-6, **TINY)


@pytest.mark.slow
def test_experiment_reports_three_learners_on_heldout_classes(tiny_report):
    r = tiny_report
    assert r.settings["heldout_classes"] == [5, 6, 7, 8, 9] and r.settings["train_classes"] == [0, 1, 2, 3, 4]
    ev = r.evaluation
    assert ev.learners[:3] == ("backprop", "feedback alignment", "meta-learned")
    assert ev.accuracy.shape[1] == 6 and ev.curve.shape[-1] == 2 * 2 + 1
    assert np.all((ev.accuracy >= 0) & (ev.accuracy <= 1))
    # the last point of each learning curve is the final query accuracy
    np.testing.assert_allclose(ev.curve[..., -1], ev.accuracy)
    # all learners start from the same initial weights on the same episodes: identical curves at 0 examples
    np.testing.assert_allclose(ev.curve[0, :, 0], ev.curve[1, :, 0])
    np.testing.assert_allclose(ev.curve[1, :, 0], ev.curve[2, :, 0])
    # baselines have one (tuned) coefficient; the meta-learned rule has the whole pool
    assert r.rules["backprop"].names == ("e_{l+1}·y_lᵀ",)
    assert len(r.rule.terms) == len(pi.metalearn.TERM_POOL)
    assert r.meta.steps_run == 4
    text = r.summary()
    assert "surviving terms" in text and r.surviving_equation() in text and "± " in text
    assert r.surviving_equation().startswith("ΔW = ")


@pytest.mark.slow
def test_report_files_round_trip(tiny_report, tmp_path):
    paths = tiny_report.save(tmp_path / "out")
    assert {p.name for p in paths.values()} == {"results.nc", "summary.md", "learning_curves.png"}
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    ds = xr.load_dataset(paths["results"], engine="h5netcdf")
    names = [t.name for t in tiny_report.rule.terms]
    assert list(ds["term"].values) == names
    np.testing.assert_allclose(ds["coefficient"].values, np.asarray(tiny_report.rule.coeffs, dtype=float))
    np.testing.assert_allclose(ds["accuracy"].values, tiny_report.evaluation.accuracy)
    assert ds["learning_curve"].dims == ("learner", "episode", "seen")
    assert ds.attrs["surviving_equation"] == tiny_report.surviving_equation()
    # one writer: results.nc is MetaLearnResult.save's file (plus the report's tables) and loads back exactly
    meta, back = tiny_report.meta, pi.metalearn.MetaLearnResult.load(paths["results"])
    for name in ("rule", "final_rule"):
        assert getattr(back, name).terms == getattr(meta, name).terms
        np.testing.assert_array_equal(getattr(back, name).coeffs, getattr(meta, name).coeffs)
    for name in ("loss_history", "validation_history", "validation_steps", "coeff_history"):
        np.testing.assert_array_equal(getattr(back, name), getattr(meta, name), err_msg=name)
    for name in ("diverged_at", "steps_run", "settings", "converged", "convergence_message"):
        assert getattr(back, name) == getattr(meta, name), name
    assert meta.wall_time > 0 and np.isnan(back.wall_time)  # timed on the object, not in the file
    md = paths["summary"].read_text(encoding="utf-8")
    assert "| backprop |" in md and "e_{l+1}·e_lᵀ" in md
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_cli_help_and_bad_options(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["discover", "feedback-alignment", "--help"])
    assert result.exit_code == 0
    for option in ("--steps", "--l1", "--k-shot", "--heldout", "--seed", "--out", "--meta-batch", "--hidden"):
        assert option in result.output
    assert "feedback-alignment" in runner.invoke(app, ["discover", "--help"]).output
    bad = runner.invoke(app, ["discover", "feedback-alignment", "--hidden", "a,b", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and isinstance(bad.exception, pi.ModelError)
    few = runner.invoke(app, ["discover", "feedback-alignment", "--heldout", "8,9", "--out", str(tmp_path)])
    assert isinstance(few.exception, pi.ModelError) and "fewer than n_way" in str(few.exception)


@pytest.mark.slow
def test_cli_feedback_alignment_tiny(tmp_path):
    runner = CliRunner()
    out = tmp_path / "fa"
    args = ["discover", "feedback-alignment", "--out", str(out), "--quiet", "--hidden", "6", "--n-way", "2",
            "--k-shot", "2", "--n-query", "2", "--steps", "4", "--meta-batch", "2", "--eval-episodes", "6",
            "--tune-episodes", "4", "--validation-episodes", "4", "--eval-every", "2", "--seed", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "meta-learned − feedback alignment" in result.output and "surviving terms" in result.output
    assert (out / "results.nc").exists() and (out / "summary.md").exists() and (out / "learning_curves.png").exists()
    ds = xr.load_dataset(out / "results.nc", engine="h5netcdf")
    assert ds.attrs["settings"].count('"steps": 4') == 1 and ds.sizes["episode"] == 6
