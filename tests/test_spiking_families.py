"""Plausibility summaries, constraints and the family (NPE posterior) predictive check on a small E/I network."""

import jax
import numpy as np
import pytest
from scipy.stats import binomtest

from plasticinfer.discovery import (
    DiscoveryError,
    FamilyTask,
    PlausibilityConstraints,
    FamiliarityProtocol,
    memory_study,
    network_statistics,
    predictive_check,
    run_npe,
    wilson_interval,
)


@pytest.fixture(scope="module")
def tiny_task():
    return FamilyTask.create(jax.random.key(7), n_exc=16, n_inh=4, p=0.5, duration=0.2, transient=0.05, segment=0.05)


def test_simulator_summaries_are_the_transformed_statistics(tiny_task, getkey):
    theta = tiny_task.prior().sample(getkey(), 1)[0]
    key = getkey()
    x = np.asarray(tiny_task.simulator(theta, key))
    run = tiny_task.run(theta, key)
    s = {k: float(v) for k, v in network_statistics(tiny_task.network, run, measure_from=tiny_task.measure_from, segment_steps=tiny_task.segment_steps).items()}
    assert len(x) == len(tiny_task.summary_names) == 3 + 4 + 1
    np.testing.assert_allclose(x[:3], [np.log1p(s["rate_e"]), np.log1p(s["rate_i"]), np.nan_to_num(s["cv_isi"])])
    np.testing.assert_allclose(x[3:7], [np.log(s[f"w_ratio_{t}"] + 1e-3) for t in ("ee", "ei", "ie", "ii")])
    assert s["rate_e"] > 0  # the tiny network is active
    np.testing.assert_allclose(tiny_task.learning_rates, [0.02 * w for w in (tiny_task.network.w_max[0] / 4, tiny_task.network.w_max[1] / 4, tiny_task.network.w_max[2] / 4, tiny_task.network.w_max[3] / 4)])


def test_constraints_by_hand():
    c = PlausibilityConstraints(rate_e=(1, 10), rate_i=(1, 20), cv_isi=(0.7, 1.5), w_ratio=(0.5, 2.0))
    ok = [np.log1p(5), np.log1p(10), 1.0, np.log(1.2 + 1e-3), 0.0]
    rows = np.array([ok, ok, ok, ok, ok])
    rows[1, 0] = np.log1p(12)  # E too fast
    rows[2, 2] = 0.3  # too regular
    rows[3, 3] = np.log(3.0)  # weights blew up
    rows[4, 4] = 0.01  # runaway steps
    np.testing.assert_array_equal(c.accept(rows, ("ee",)), [True, False, False, False, False])
    assert c.target_summaries(("ee",)).shape == (5,)
    with pytest.raises(DiscoveryError, match="rate_e"):
        PlausibilityConstraints(rate_e=(5, 1))


def test_wilson_interval_matches_scipy():
    for k, n in [(0, 10), (3, 40), (40, 40)]:
        ci = binomtest(k, n).proportion_ci(method="wilson")
        np.testing.assert_allclose(wilson_interval(k, n), (ci.low, ci.high), atol=1e-9)


def test_task_errors(getkey):
    with pytest.raises(DiscoveryError, match="plastic"):
        FamilyTask.create(getkey(), n_exc=8, n_inh=2, plastic=("xy",))
    with pytest.raises(DiscoveryError, match="multiple"):
        FamilyTask.create(getkey(), n_exc=8, n_inh=2, duration=0.25, segment=0.1)


@pytest.mark.slow
@pytest.mark.compile_bound  # measured: faster compiled unoptimised (tests/conftest.py)
def test_family_posterior_end_to_end_small(tiny_task, getkey):
    """Wiring: NPE on the network simulator, then the predictive check counts what it should."""
    res = run_npe(getkey(), tiny_task.simulator, tiny_task.prior(), n_simulations=48, batch_size=16, flow_layers=2, nn_width=16, max_epochs=20)
    assert res.theta.shape[1] == 24 and res.x.shape[1] == 8
    chk = predictive_check(getkey(), res.posterior, tiny_task, PlausibilityConstraints(), n=16, batch_size=16)
    assert 0 <= chk.posterior_fraction <= min(chk.per_summary_posterior.values())
    assert 0 <= chk.prior_fraction <= min(chk.per_summary_prior.values())
    assert chk.posterior_interval[0] <= chk.posterior_fraction <= chk.posterior_interval[1]
    assert "posterior (16)" in chk.markdown()

    # the memory probe with its controls, at two delays on the same check (what bench_families --delays runs)
    proto = FamiliarityProtocol(n_patterns=4, repeats=1, warmup=0.05, delay=0.05, test_repeats=2)
    report, names = memory_study(jax.random.key(3), tiny_task, chk, proto, n_memory=2, n_shuffles=5)
    again, _ = memory_study(jax.random.key(3), tiny_task, chk, proto, n_memory=2, n_shuffles=5)
    later, _ = memory_study(jax.random.key(3), tiny_task, chk, FamiliarityProtocol(n_patterns=4, repeats=1, warmup=0.05, delay=0.2, test_repeats=2),
                            n_memory=2, n_shuffles=5)  # fmt: skip
    groups = list(report.groups)
    assert groups[0].startswith("posterior") and groups[1:] == ["prior", "no plasticity", "hand-written"]
    assert len(report.groups["hand-written"].auc) == len(names["hand-written"]) == 8  # two hand-written rules at four speeds
    assert np.all(report.groups["no plasticity"].speed == 0) and np.all(report.groups["prior"].speed > 0)
    np.testing.assert_array_equal(report.groups["prior"].auc, again.groups["prior"].auc)  # one key, one answer
    assert not np.array_equal(report.groups["prior"].speed, later.groups["prior"].speed)  # the delay is simulated (weights keep moving)
