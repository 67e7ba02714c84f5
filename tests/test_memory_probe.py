"""Network familiarity probe: readout on after-familiarisation responses, shuffled-label null, controls, verdict."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticinfer.discovery import (
    DiscoveryError,
    FamiliarityProtocol,
    FamilyTask,
    MemoryGroup,
    familiarity_responses,
    hand_written_rules,
    make_patterns,
    memory_report,
    null_group_means,
    readout_auc,
    shuffled_aucs,
    speed_matched,
)


def _synthetic(rng, shift, n_pat=12, reps=3, n_feat=20):
    groups = np.repeat(np.arange(n_pat), reps)
    X = rng.normal(size=(len(groups), n_feat))
    fam = groups < n_pat // 2
    X[fam, :5] += shift
    return X, fam, groups


@pytest.mark.slow
def test_readout_detects_a_population_shift_and_not_noise():
    rng = np.random.default_rng(0)
    X, y, g = _synthetic(rng, 1.5)
    assert readout_auc(X, y, g) > 0.95
    null = shuffled_aucs(X, g, 6, rng, n=30)
    assert readout_auc(X, y, g) > np.quantile(null, 0.95)
    noise = [readout_auc(*_synthetic(rng, 0.0)) for _ in range(20)]
    assert abs(np.mean(noise) - 0.5) < 0.1  # chance on average (CV AUC is noisy per dataset)


def test_readout_uses_held_out_patterns_only():
    """Pattern identity alone (no familiarity signal shared across patterns) must not be decodable."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(12), 3)
    X = rng.normal(size=(12, 20))[g] + 0.05 * rng.normal(size=(36, 20))  # each pattern its own response, repeats identical
    aucs = [readout_auc(X, np.isin(g, rng.choice(12, 6, replace=False)), g) for _ in range(20)]
    assert np.mean(aucs) < 0.65  # a trial-wise split would score ~1 here


def test_readout_errors():
    with pytest.raises(DiscoveryError, match="equally many"):
        readout_auc(np.zeros((6, 2)), np.array([1, 1, 1, 1, 0, 0], bool), np.arange(6))


def test_speed_matching_and_verdicts():
    np.testing.assert_array_equal(speed_matched([0.01, 1.0, 0.3], [0.02, 0.5, 2.0]), [0, 1, 1])
    rng = np.random.default_rng(2)
    nulls = rng.normal(0.5, 0.05, (10, 40))
    good = MemoryGroup("posterior", np.full(10, 0.8) + rng.normal(0, 0.02, 10), np.ones(10), null_group_means(nulls, rng))
    flat = MemoryGroup("prior", np.full(10, 0.5) + rng.normal(0, 0.02, 10), np.ones(10), null_group_means(nulls, rng))
    rep = memory_report({"posterior": good, "prior": flat}, "posterior", np.full(10, 0.5), rng=rng)
    assert rep.verdict.startswith("posterior rules detect familiarity")
    rep = memory_report({"posterior": good, "prior": flat}, "posterior", good.auc + 0.01, rng=rng)  # a hand rule as good
    assert rep.verdict.startswith("No memory claim") and "speed-matched" in rep.verdict
    same = MemoryGroup("posterior", flat.auc.copy(), np.ones(10), flat.null_means)
    rep = memory_report({"posterior": same, "prior": flat}, "posterior", flat.auc, rng=rng)
    assert "not above the shuffled-label" in rep.verdict
    assert "| posterior | 10 |" in rep.markdown()


def test_protocol_errors():
    with pytest.raises(DiscoveryError, match="even"):
        FamiliarityProtocol(n_patterns=5)


@pytest.mark.slow
def test_protocol_on_small_network(getkey):
    task = FamilyTask.create(jax.random.key(3), n_exc=16, n_inh=4, p=0.5, segment=0.05, duration=0.1, transient=0.05)
    proto = FamiliarityProtocol(n_patterns=4, repeats=2, warmup=0.05, delay=0.05, test_repeats=2)
    pats = make_patterns(getkey(), task, proto)
    assert pats.shape == (4, 20) and float(pats[:, 16:].min()) == 1.0 and float(pats[:, :16].max()) == 2.0
    hand, names = hand_written_rules(task, scales=(10.0,))
    zero = np.tile([0, 0, 0, 0, 0.02, 0.02], 4)
    key = getkey()
    resp, order, speed = familiarity_responses(task, proto, jnp.asarray(zero), pats, key)
    assert resp.shape == (8, 16) and float(speed) == 0.0  # no plasticity: weights untouched
    np.testing.assert_array_equal(np.asarray(order), [0, 1, 2, 3, 0, 1, 2, 3])
    assert float(resp.sum()) > 0
    _, _, speed_v = familiarity_responses(task, proto, jnp.asarray(hand[0]), pats, key)
    assert names[0] == "Vogels I→E ×10" and float(speed_v) > 0
