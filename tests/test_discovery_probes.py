"""Held-out probes (familiarity, generalisation), the B3 analysis, reports and the CLI."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import plasticinfer as pi
from plasticinfer.discovery import (
    DiscoveryError,
    HomeostasisObjective,
    SearchResult,
    TraceRule,
    analyse_homeostasis,
    evaluate,
    familiarity_probe,
    find_families,
    generalisation,
    roc_auc,
    save_report,
    summary_markdown,
    to_dataset,
)


def test_roc_auc():
    assert roc_auc([2, 3, 4], [0, 1]) == 1.0
    assert roc_auc([0, 1], [2, 3, 4]) == 0.0
    assert roc_auc([1, 1], [1, 1, 1]) == 0.5
    assert roc_auc([1, 3], [2]) == 0.5


def _stack(*rules):
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *rules)


@pytest.fixture(scope="module")
def rate_task():
    return HomeostasisObjective.create(n_steps=600)


def test_familiarity_zero_rule_is_chance_and_vogels_detects(rate_task, key):
    lr = rate_task.learning_rate
    rules = _stack(TraceRule(learning_rate=lr), TraceRule.vogels(5.0, learning_rate=lr))
    score = familiarity_probe(rate_task, rules, key=key)
    assert score.auc[0] == 0.5  # no weight change: every score is exactly 0
    np.testing.assert_array_equal(score.delta_familiar[0], 0.0)
    assert score.auc[1] > 0.6  # input-specific homeostasis pulls familiar patterns to the set point
    assert score.fraction_detecting(0.6) == 0.5


def test_generalisation_to_other_input_rates(rate_task, key):
    lr = rate_task.learning_rate
    vogels = TraceRule.vogels(5.0, learning_rate=lr)
    post_only = TraceRule(-0.15, 0.3, 0.0, 0.0, learning_rate=lr)  # ν* = 5 Hz at 10 Hz input
    assert float(post_only.fixed_point(10.0)) == pytest.approx(5.0)
    out = generalisation({"20 Hz": rate_task.with_rates(nu_inh=20.0)}, _stack(vogels, post_only), key=key)
    rate = out["20 Hz"]["rate_hz"]
    assert rate[0] == pytest.approx(5.0, abs=0.1)  # pure pairing: ν* independent of ν_pre
    assert rate[1] == pytest.approx(float(post_only.fixed_point(20.0)), rel=0.02)  # 10 Hz, off target


def _result(objective, rules, key):
    m = evaluate(objective, rules, key)
    n = len(m["loss"])
    success = np.array([objective.success({k: v[i] for k, v in m.items()}) for i in range(n)])
    return SearchResult(rules, m["loss"], m, success, np.ones((n, 3)), "gradient", 1.0, {"restarts": n})


def test_homeostasis_analysis_and_report(rate_task, key, tmp_path):
    lr = rate_task.learning_rate
    rules = _stack(TraceRule.vogels(5.0, learning_rate=lr), TraceRule(-0.2, 0.2, 0.5, 0.5, learning_rate=lr), TraceRule(learning_rate=lr))
    res = _result(rate_task, rules, key)
    np.testing.assert_array_equal(res.success, [True, True, False])
    analysis = analyse_homeostasis({"gradient": res}, rate_task, key=key)
    t = analysis.tables["gradient"]
    np.testing.assert_allclose(t["nu_star"][:2], 5.0)
    assert np.all(np.abs(t["residual"][:2]) < 0.05)
    np.testing.assert_allclose(t["position"][:2], [0.0, 0.2 / (0.2 + 0.02 * 10)])
    s = analysis.summary()["gradient"]
    assert s["solutions"] == 2 and s["position_max"] == pytest.approx(0.5)
    assert 0.0 <= s["familiarity_above_chance"] <= 1.0
    # the controls ran on the same episode and patterns: the Vogels solution is the "Vogels ×1" control
    c, fam = analysis.familiarity_controls, analysis.familiarity["gradient"]
    assert c.speed[0] == 0.0 and np.all(np.diff(c.speed[1:]) > 0)  # no plasticity, then Vogels ×0.25 … ×16
    assert fam.speed[0] == pytest.approx(c.speed[2], rel=1e-5) and fam.auc_after[0] == pytest.approx(c.auc_after[2], abs=1e-9)
    nearest = [1 + int(np.argmin(np.abs(np.log(c.speed[1:]) - np.log(fam.speed[i])))) for i in range(2)]
    assert nearest[0] == 2
    hand = np.median([fam.auc_after[i] - c.auc_after[nearest[i]] for i in range(2)])
    assert s["familiarity_minus_speed_matched_vogels_median"] == pytest.approx(hand)
    assert s["familiarity_minus_no_plasticity_median"] == pytest.approx(np.median(fam.auc_after[:2] - c.auc_after[0]))
    assert "Vogels ×16" in analysis.markdown() and "familiarity_above_chance" in analysis.markdown()
    assert s["generalises_nu_inh_20Hz"] == 0.5  # Vogels generalises, the β-rule does not
    fams = find_families(res, reference="alpha")
    ds = to_dataset(res, reference="alpha", families=fams)
    md = summary_markdown(res, title="test", families=fams, sections={"Manifold": analysis.markdown()})
    paths = save_report(
        tmp_path, markdown=md, searches={"results": res}, families={"results": fams}, reference="alpha",
        figures={"manifold": analysis.figure()},
    )  # fmt: skip
    back = xr.load_dataset(paths["results"], engine="h5netcdf")
    np.testing.assert_allclose(back["coefficients"].sel(parameter="alpha").values, np.asarray(rules.alpha))
    np.testing.assert_array_equal(back["success"].values, [1, 1, 0])
    # one writer: the report's file is the one SearchResult.save writes (with the report's table), and loads back
    xr.testing.assert_identical(back, ds)
    again = SearchResult.load(paths["results"])
    assert isinstance(again.rules, TraceRule)
    for name in ("alpha", "beta", "gamma", "kappa"):
        np.testing.assert_array_equal(getattr(again.rules, name), getattr(rules, name))
    np.testing.assert_array_equal(again.losses, res.losses)
    np.testing.assert_array_equal(again.success, res.success)
    assert set(again.metrics) == set(res.metrics)
    for k in res.metrics:
        np.testing.assert_array_equal(again.metrics[k], res.metrics[k])
    assert again.equation(0) == res.equation(0)
    assert "x_post" in paths["summary"].read_text() and paths["manifold"].stat().st_size > 1000
    # a rerun into the same folder with fewer outputs (e.g. --method gradient after both) leaves nothing stale, and
    # never touches the user's own files
    (tmp_path / "notes.txt").write_text("mine")
    again = save_report(tmp_path, markdown=md, searches={"results_gradient": res}, families={"results_gradient": fams}, reference="alpha")
    assert not paths["results"].exists() and not paths["manifold"].exists()
    assert again["results_gradient"].exists() and (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["discovery_files.json", "notes.txt", "results_gradient.nc", "summary.md"]
    # another command's report in the same folder (a fly report's list) is not this report's to clean up
    (tmp_path / "report.md").write_text("fly")
    (tmp_path / "report_files.json").write_text('["report.md"]')
    save_report(tmp_path, markdown=md, searches={"results": res}, reference="alpha")
    assert (tmp_path / "report.md").read_text() == "fly" and not (tmp_path / "results_gradient.nc").exists()


# The three discovery commands are three tests (each mostly XLA compilation) so that test workers can share them out.
@pytest.mark.slow  # about 10 s: in the whole suite (--slow), out of the fast tier
def test_cli_homeostasis(tmp_path):
    from plasticinfer.cli import app

    r = CliRunner().invoke(
        app,
        ["discover", "homeostasis", "--restarts", "2", "--steps", "5", "--cma-restarts", "1", "--generations", "2", "--no-familiarity", "--out", str(tmp_path / "h"), "--quiet"],
    )
    assert r.exit_code == 0, r.output
    for name in ("results_gradient.nc", "results_cma-es.nc", "summary.md", "manifold.png"):
        assert (tmp_path / "h" / name).exists()
    assert SearchResult.load(tmp_path / "h" / "results_cma-es.nc").method == "cma-es"
    assert "ν*" in (tmp_path / "h" / "summary.md").read_text()


def test_cli_pc1(tmp_path):
    from plasticinfer.cli import app

    r = CliRunner().invoke(app, ["discover", "pc1", "--n-pre", "3", "--restarts", "1", "--steps", "4", "--out", str(tmp_path / "p"), "--quiet"])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "p" / "summary.md").read_text()
    assert "Comparison with Oja's rule" in md and "θ(y²w)/θ(x·y)" in md
    assert xr.load_dataset(tmp_path / "p" / "results.nc", engine="h5netcdf").sizes["parameter"] == 27
    # the command line's optimiser is recorded in its own words (it was "user-supplied optax transformation")
    assert SearchResult.load(tmp_path / "p" / "results.nc").settings["optimiser"] == "Adam 0.03, cosine-decayed to 5 % over 4 steps"


@pytest.mark.slow  # about 10 s: in the whole suite (--slow), out of the fast tier
def test_cli_pca_network(tmp_path):
    from plasticinfer.cli import app

    r = CliRunner().invoke(app, ["discover", "pca-network", "--n-in", "6", "--n-out", "2", "--restarts", "1", "--steps", "3", "--out", str(tmp_path / "n"), "--quiet"])
    assert r.exit_code == 0, r.output
    ds = xr.load_dataset(tmp_path / "n" / "results.nc", engine="h5netcdf")
    assert "ff:x*y" in ds["parameter"].values and "lateral:x*y" in ds["parameter"].values


def test_cli_lif_refuses_gradients(tmp_path):
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "plasticinfer.cli", "discover", "homeostasis", "--model", "lif", "--method", "gradient", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "--method cma" in p.stderr


def test_familiarity_after_only_score_and_null(rate_task, key):
    """Controlled score: after-familiarisation responses only, against shuffled labels; speed reported."""
    lr = rate_task.learning_rate
    rules = _stack(TraceRule(learning_rate=lr), TraceRule.vogels(5.0, learning_rate=lr))
    score = familiarity_probe(rate_task, rules, key=key, n_shuffles=100)
    assert score.speed[0] == 0.0 and score.speed[1] > 0.0  # the zero rule leaves the weights alone
    # no plasticity: labels carry no information, so the after-only AUC is one draw of its own null
    assert 0.0 <= score.auc_after[0] <= 1.0 and 0.5 <= score.null_p95[0] < 0.75
    assert 0.0 <= score.fraction_above_chance() <= 1.0
    # the oracle of the null: with identical scores for all patterns every shuffle gives 0.5
    from plasticinfer.discovery._probes import _after_only

    auc, p95 = _after_only(np.ones((1, 3, 8)), 4, np.random.default_rng(0), 20)
    assert auc[0] == 0.5 and p95[0] == 0.5


@pytest.mark.slow
def test_lif_metrics_report_counting_noise(key):
    """The LIF rate comes with its Poisson counting noise, √(spikes)/T, so residuals can be read against it."""
    from plasticinfer.discovery import LIFHomeostasisObjective

    obj = LIFHomeostasisObjective.create(duration=2.0, measure=1.0, window=1.0, n_networks=2)
    m = obj.metrics(obj.reference_rule(), obj.sample(key))
    spikes = float(m["rate_hz"]) * 1.0 * 2  # rate × measured seconds × networks
    assert spikes > 0
    assert float(m["rate_counting_sd_hz"]) == pytest.approx(np.sqrt(spikes) / 2.0)


def test_off_manifold_needs_a_material_residual_as_well_as_a_large_z():
    """The rate model's runs settle on one rate: a solution still settling 0.009 Hz off ν* = 5 Hz read 9 SE and was
    counted off the manifold. Counted now: more than 3 SE *and* 1 % of ν* (here 0.2 Hz at 10 SE); not counted:
    0.009 Hz at 9 SE, or 0.5 Hz at 2 SE."""
    from plasticinfer.discovery._homeostasis_report import _residual_z_summary

    t = {"residual": np.array([0.009, 0.2, 0.5]), "residual_z": np.array([9.0, 10.0, 2.0]),
         "nu_star": np.array([5.0, 5.0, 5.0]), "rate_se": np.array([0.001, 0.02, 0.25]), "runs": np.full(3, 8)}  # fmt: skip
    out = _residual_z_summary(t, np.ones(3, bool))
    assert out["off_manifold_3se"] == 1 and out["sim_residual_z_max"] == 10.0
    assert _residual_z_summary(t, np.array([True, False, True]))["off_manifold_3se"] == 0


def test_resampled_manifold_reads_residuals_against_their_standard_error(key):
    """A rule whose measured rate is its fixed point plus unit-variance noise: the mean over runs, its standard
    error and the residual in standard errors come out as a hand computation over the same draws says."""
    from plasticinfer.discovery import AbstractObjective, resample_manifold

    class NoisyRate(AbstractObjective):
        def sample(self, key):
            return jax.random.normal(key, ())

        def loss(self, rule, episode):
            return jnp.sum(rule.coeffs**2)

        def metrics(self, rule, episode):  # rate = coefficient + 2 Hz of noise per run
            return {"loss": self.loss(rule, episode), "rate_hz": rule.coeffs[0] + 2.0 * episode}

        def default_rule(self):
            return pi.TaylorRule(["x"], jnp.zeros(1))

    rules = eqx.tree_at(lambda r: r.coeffs, pi.TaylorRule(["x"], jnp.zeros(1)), jnp.asarray([[5.0], [7.0]]))  # two restarts
    keys = jax.random.split(key, 16)
    draws = np.array([2.0 * float(jax.random.normal(k, ())) for k in keys])
    out = resample_manifold(NoisyRate(), rules, keys, nu_star=np.array([5.0, 5.0]))
    se = draws.std(ddof=1) / 4
    np.testing.assert_allclose(out["rate"], [5.0 + draws.mean(), 7.0 + draws.mean()], rtol=1e-6)
    np.testing.assert_allclose(out["rate_se"], [se, se], rtol=1e-5)
    np.testing.assert_allclose(out["residual_z"], [draws.mean() / se, (2.0 + draws.mean()) / se], rtol=1e-5)
    assert abs(out["residual_z"][0]) < 3 < abs(out["residual_z"][1])  # on the manifold / 2 Hz off it, by 4 SE
    with pytest.raises(DiscoveryError, match="at least 2 runs"):
        resample_manifold(NoisyRate(), rules, keys[:1], nu_star=np.array([5.0, 5.0]))

    class RoundingRate(NoisyRate):  # a deterministic rate whose runs differ only by rounding (1e-9 Hz)
        def metrics(self, rule, episode):
            return {"loss": self.loss(rule, episode), "rate_hz": rule.coeffs[0] + 1e-9 * episode}

    det = resample_manifold(RoundingRate(), rules, keys, nu_star=np.array([5.0 - 1e-7, 5.0]))
    assert np.all(np.isnan(det["residual_z"]))  # not 30 "standard errors" off the manifold
    np.testing.assert_allclose(det["residual"], [1e-7 + 1e-9 * draws.mean() / 2, 2.0 + 1e-9 * draws.mean() / 2], rtol=1e-3, atol=1e-9)
