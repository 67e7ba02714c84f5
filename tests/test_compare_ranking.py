"""`compare` ranks the true hypothesis first on synthetic data, with fair baselines; the CLI writes its outputs."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import plasticinfer as pi
from plasticinfer.compare import BaseRate, CoinFlip, HeldOutTrials, LeaveOneSubjectOut, compare
from plasticinfer.compare._splits import Fold

TRUE = {"x*r": 0.3, "w": -0.1}


@pytest.fixture(scope="module")
def syn():
    return pi.make_choice_data(pi.TaylorRule.from_terms(TRUE), key=jax.random.key(42), n_subjects=6, inverse_temperature=1.0)


def _rule(*terms):
    return pi.TaylorRule.from_terms({t: 0.0 for t in terms})


@pytest.fixture(scope="module")
def result(syn):
    hyps = {"x·r": _rule("x*r"), "x·r + w (true)": _rule("x*r", "w"), "x·r + x": _rule("x*r", "x")}
    return compare(hyps, syn.data, split=HeldOutTrials(0.25), blocks=syn.block, steps=60, key=jax.random.key(0))


@pytest.mark.slow
def test_true_hypothesis_ranks_first(result):
    ranking = result.ranking()
    assert ranking[0] == "x·r + w (true)", result.summary()
    table = result.table()
    assert set(table.index) == {"x·r", "x·r + w (true)", "x·r + x", "coin flip", "base rate", "Rescorla–Wagner"}
    best = table.loc["x·r + w (true)"]
    assert best["rank"] == 1 and best["delta_ll_vs_best"] == 0.0
    assert best["median_dev_explained_vs_coin"] > 0.1 and best["median_dev_explained_vs_base_rate"] > 0.1
    assert best["median_dev_explained_vs_rw"] > 0  # beats the textbook rule too
    assert best["subjects_better_than_base"] == 6
    assert best["n_params"] == 2 + 1  # two terms and the bias (choice data: initial weights start at 0)
    ps_true = result.per_subject().query("hypothesis == 'x·r + w (true)'")
    np.testing.assert_allclose(ps_true["aic"], -2 * ps_true["train_ll"] + 2 * 3)
    # the paired test is the scipy Wilcoxon on per-subject held-out log-lik per observation
    ps = result.per_subject()
    a = ps[ps.hypothesis == "x·r + w (true)"].set_index("subject")["heldout_ll_per_obs"]
    b = ps[ps.hypothesis == "x·r"].set_index("subject")["heldout_ll_per_obs"]
    t = result.paired_test("x·r + w (true)", "x·r")
    assert t.n_better == int((a > b).sum())
    assert table.loc["x·r", "p_best_better"] == pytest.approx(t.p_value)


@pytest.mark.slow
def test_baselines_score_what_they_claim(result, syn):
    ps = result.per_subject().set_index(["hypothesis", "subject"]).sort_index()
    n_test = ps.loc["coin flip"]["n_heldout"]
    np.testing.assert_allclose(ps.loc["coin flip"]["heldout_ll"], n_test * np.log(0.5))
    np.testing.assert_allclose(ps.loc["base rate", ]["dev_explained_vs_base_rate"], 0.0, atol=1e-12)
    # base rate by hand for subject 0: smoothed training rate applied to held-out choices
    train, test = syn.data.split_trials(0.25, groups=syn.block)
    c = np.asarray(syn.data.observations[0])
    tr, te = np.asarray(train.mask[0]), np.asarray(test.mask[0])
    p1 = (c[tr].sum() + 0.5) / (tr.sum() + 1.0)
    expected = np.sum(np.where(c[te] == 1, np.log(p1), np.log(1 - p1)))
    assert ps.loc[("base rate", 0), "heldout_ll"] == pytest.approx(expected)


@pytest.mark.slow
def test_save_writes_table_markdown_and_plot(result, tmp_path):
    paths = result.save(tmp_path / "cmp")
    for p in paths.values():
        assert p.exists() and p.stat().st_size > 0
    table = pd.read_csv(paths["table"], index_col=0)
    assert table.index[0] == "x·r + w (true)"
    assert "ranking by held-out log-likelihood" in paths["markdown"].read_text()
    assert not list((tmp_path / "cmp").glob(".*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.slow
def test_leave_one_subject_out_with_shared_rule(syn):
    data = jax.tree_util.tree_map(lambda a: a[:3, :120], syn.data)
    res = compare({"x·r + w": _rule("x*r", "w")}, data, split=LeaveOneSubjectOut(), per_subject=False, steps=30,
                  baselines=[CoinFlip(), BaseRate()], restarts=1)
    ps = res.per_subject()
    assert sorted(ps["subject"].unique()) == [0, 1, 2]
    assert (ps.groupby("hypothesis")["n_heldout"].sum() == 3 * 120).all()
    assert np.isfinite(ps["heldout_ll"]).all()
    with pytest.raises(pi.compare.ComparisonError, match="per_subject=False"):
        compare({"x·r": _rule("x*r")}, data, split=LeaveOneSubjectOut(), steps=5, baselines=False, restarts=1)


def test_base_rate_pools_training_subjects_for_new_subjects():
    obs = jnp.asarray([[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0]])
    cues = jnp.broadcast_to(jnp.eye(2), (3, 4, 2, 2))
    data = pi.TrialData({"cues": cues, "choice": obs, "reward": jnp.zeros((3, 4))}, obs, jnp.ones((3, 4), bool))
    fold = Fold("s2", jax.tree_util.tree_map(lambda a: a[:2], data), jax.tree_util.tree_map(lambda a: a[2:], data),
                np.asarray([0, 1]), np.asarray([2]))
    from plasticinfer.compare import FitSettings

    s = BaseRate().score(fold, FitSettings())
    p1 = (3 + 0.5) / (8 + 1.0)
    assert s.test_ll[0] == pytest.approx(2 * np.log(p1) + 2 * np.log(1 - p1))


@pytest.mark.slow
def test_cli_compare_dataset_file(tmp_path, syn):
    """A behaviour dataset in the schema of docs/data-format.md, through the command line."""
    from plasticinfer.cli import app

    n = 3
    ds = pi.behaviour_dataset(
        [np.asarray(syn.data.observations[i]) for i in range(n)],
        [np.asarray(syn.data.inputs["reward"][i]) for i in range(n)],
        block=[np.asarray(syn.block[i]) for i in range(n)],
        subjects=["fly_a", "fly_b", "fly_c"],
    )
    path = tmp_path / "flies.nc"
    pi.save_netcdf(ds, path)
    out = CliRunner().invoke(app, ["compare", str(path), "--steps", "10", "--restarts", "1", "-H", "x*r", "-H", "x*r + w",
                                   "--no-baselines", "--split", "future", "--out", str(tmp_path / "c"), "--quiet"])
    assert out.exit_code == 0, out.output
    for name in ("comparison.csv", "comparison.md", "per_subject.csv", "comparison.png"):
        assert (tmp_path / "c" / name).exists()
    per = pd.read_csv(tmp_path / "c" / "per_subject.csv")
    assert set(per["subject_name"]) == {"fly_a", "fly_b", "fly_c"} and set(per["hypothesis"]) == {"x*r", "x*r + w"}
    assert (per["n_heldout"] == 60).all()  # leave-future-out: the last quarter of 240 trials
    bad = CliRunner().invoke(app, ["compare", "--synthetic", "nope", "--out", str(tmp_path / "d")])
    assert bad.exit_code != 0


@pytest.mark.slow
def test_compare_on_activity_data():
    """Neural data: Gaussian likelihoods, mean-activity and static-weight baselines; the true rule wins."""
    truth = pi.TaylorRule(pi.oja(1.0).terms, pi.oja(1.0).coeffs, learning_rate=0.02)
    k_in, k_data = jax.random.split(jax.random.key(3))
    inputs = pi.GaussianInputs.with_spectrum(k_in, jnp.linspace(2.0, 0.2, 5))
    syn = pi.make_activity_data(truth, pi.FeedForward(5, 2), inputs, key=k_data, n_trajectories=3, n_trials=80, noise=0.1, init_scale=0.5)
    hyps = {
        "oja (true)": pi.TaylorRule.from_terms({"x*y": 0.0, "y^2*w": 0.0}, learning_rate=0.02),
        "hebb": pi.TaylorRule.from_terms({"x*y": 0.0}, learning_rate=0.02),
    }
    res = compare(hyps, syn.data, split=HeldOutTrials(0.25), steps=40, restarts=1, key=jax.random.key(4))
    assert res.baselines == ["mean activity", "static weights"]
    assert res.ranking()[0] == "oja (true)", res.summary()
    ps = res.per_subject()
    assert not any(c.startswith("dev_explained") for c in ps)  # densities: no deviance ratio, a log-lik gain instead
    assert (ps.query("hypothesis == 'oja (true)'")["ll_gain_vs_static"] > 0).all()
    n_rec = int(np.asarray(syn.data.mask)[0, 0].sum())
    assert (ps.query("hypothesis == 'mean activity'")["n_params"] == 2 * 2).all()  # mean and sd of each output neuron
    assert (ps["n_heldout"] == 20 * n_rec).all()
    # an equation string on activity data runs at the command line's η (0.01), not the choice rules' η = 1
    from plasticinfer.compare._cli import compare_command
    from plasticinfer.compare._parse import ACTIVITY_LEARNING_RATE

    assert inspect.signature(compare_command).parameters["learning_rate"].default == ACTIVITY_LEARNING_RATE == 0.01
    eq = compare(["x*y - y^2*w"], syn.data, split=HeldOutTrials(0.25), steps=2, restarts=1, baselines=False, key=jax.random.key(4))
    (model,) = eq.fitted.values()
    assert model.rule.learning_rate == ACTIVITY_LEARNING_RATE


@pytest.mark.slow  # 20–33 s on 2 cores: the slow tier (still run by CI)
def test_cli_compare_named_dataset_and_missing_file(tmp_path, shared_data, monkeypatch):
    """`plasticinfer compare rajagopalan2023` reads the named real dataset; a missing file is one clear line."""
    from plasticinfer.cli import app

    monkeypatch.setenv("PLASTICINFER_DATA_DIR", str(shared_data))
    out = CliRunner().invoke(app, ["compare", "rajagopalan2023", "--steps", "2", "--restarts", "1", "-H", "x*r",
                                   "--no-baselines", "--out", str(tmp_path / "c"), "--quiet"])
    assert out.exit_code == 0, out.output
    per = pd.read_csv(tmp_path / "c" / "per_subject.csv")
    assert len(per) == 18 and np.isfinite(per["heldout_ll"]).all()
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "plasticinfer.cli", "compare", str(tmp_path / "nope.nc"), "--out", str(tmp_path / "d")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "nope.nc" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_compare_logs_one_line_per_fit(tmp_path):
    """Progress that reads well in a log file: one line before each fit, hypothesis and fold named; the
    command line prints them on stderr unless --quiet."""
    tiny = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.5}), key=jax.random.key(0), n_subjects=4,
                               block_probabilities=((0.2, 0.8), (0.8, 0.2)), trials_per_block=10)
    lines = []
    pi.compare.compare(["x*r", "x*r + w"], tiny.data, steps=2, restarts=1, baselines=False, progress=False, log=lines.append)
    assert lines == ["[1/2] x*r", "[2/2] x*r + w"]
    lines.clear()
    pi.compare.compare(["x*r"], tiny.data, split=pi.compare.SubjectKFold(2, seed=0), per_subject=False, steps=2,
                       restarts=1, baselines=False, progress=False, log=lines.append)
    # the fold's own name, once ("subjects fold 1/2"; the line used to read "fold subjects fold 1/2")
    assert lines == ["[1/2] x*r, subjects fold 1/2", "[2/2] x*r, subjects fold 2/2"]

    from plasticinfer.cli import app

    args = ["compare", "--synthetic", "choice", "--subjects", "2", "--steps", "2", "--restarts", "1", "-H", "x*r",
            "--no-baselines", "--out"]
    loud = CliRunner().invoke(app, args + [str(tmp_path / "a")])
    assert loud.exit_code == 0, loud.output
    assert "[1/1] x*r" in loud.output
    quiet = CliRunner().invoke(app, args + [str(tmp_path / "b"), "--quiet"])
    assert quiet.exit_code == 0 and "[1/1]" not in quiet.output
