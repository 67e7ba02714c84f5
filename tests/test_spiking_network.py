"""Recurrent E/I LIF network with co-active pair rules: JAX scan against an independent plain NumPy loop."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from plasticinfer.discovery import DiscoveryError, EINetwork, EIRules, PairRule, network_statistics, simulate_network

TYPES = ("ee", "ei", "ie", "ii")


def reference_loop(net, rules, key, n_steps, drive=None, segment_steps=None):
    """Plain NumPy loop, synapse by synapse; same external Poisson counts as the JAX code (drawn per step)."""
    w = np.array(net.weights, dtype=float)
    mask = np.array(net.mask)
    n, ne, dt = net.n, net.n_exc, net.dt
    v, ie, ii = np.zeros(n), np.zeros(n), np.zeros(n)
    refr = np.zeros(n, int)
    prev = np.zeros(n, bool)
    xpre, xpost = np.zeros((4, n)), np.zeros((4, n))
    w_max = np.array(net.w_max)
    spikes, volts = [], []
    for t in range(n_steps):
        d = None if drive is None else drive[t // segment_steps]
        ext = np.asarray(net.external_counts(key, t, d))
        for i in range(n):
            rec_e = sum(w[i, j] for j in range(n) if prev[j] and j < ne)
            rec_i = sum(w[i, j] for j in range(n) if prev[j] and j >= ne)
            ie[i] = ie[i] * math.exp(-dt / net.tau_exc) + net.tau_m / net.tau_exc * (rec_e + net.j_ext * ext[i])
            ii[i] = ii[i] * math.exp(-dt / net.tau_inh) + net.tau_m / net.tau_inh * rec_i
        spike = np.zeros(n, bool)
        for i in range(n):
            if refr[i] > 0:
                v[i] = net.reset
                refr[i] -= 1
            else:
                v[i] = v[i] + dt / net.tau_m * (ie[i] - ii[i] - v[i])
                if v[i] >= net.threshold:
                    spike[i] = True
                    v[i] = net.reset
                    refr[i] = net.refractory_steps
        if rules is not None:
            for k, name in enumerate(TYPES):
                r = getattr(rules, name)
                if r is not None:
                    xpre[k] *= math.exp(-dt / float(r.tau_pre))
                    xpost[k] *= math.exp(-dt / float(r.tau_post))

            def typ(i, j):  # post i, pre j
                return 2 * (j >= ne) + (i >= ne)

            for j in np.flatnonzero(spike):  # presynaptic spikes first
                for i in range(n):
                    k = typ(i, j)
                    r = getattr(rules, TYPES[k])
                    if mask[i, j] and r is not None:
                        w[i, j] = np.clip(w[i, j] + r.learning_rate * (float(r.alpha) + float(r.kappa) * xpost[k, i]), 0, w_max[k])
            for i in np.flatnonzero(spike):
                for j in range(n):
                    k = typ(i, j)
                    r = getattr(rules, TYPES[k])
                    if mask[i, j] and r is not None:
                        w[i, j] = np.clip(w[i, j] + r.learning_rate * (float(r.beta) + float(r.gamma) * xpre[k, j]), 0, w_max[k])
            xpre += spike
            xpost += spike
        prev = spike
        spikes.append(spike.copy())
        volts.append(v.copy())
    return np.array(spikes), np.array(volts), w


def small_net(key, **kw):
    return EINetwork.create(key, n_exc=8, n_inh=2, p=0.5, j_exc=3.0, g=1.5, nu_ext=40.0, **kw)


def coactive_rules():
    return EIRules(
        ee=PairRule(-0.2, 0.1, 0.5, 0.3, 0.015, 0.03, learning_rate=0.5),
        ei=PairRule(0.1, -0.2, 0.2, 0.6, 0.01, 0.02, learning_rate=0.5),
        ie=PairRule.vogels(5.0, tau=0.02, learning_rate=0.5),
        ii=PairRule(-0.3, 0.2, 0.4, -0.1, 0.03, 0.01, learning_rate=0.5),
    )


@pytest.mark.parametrize("plastic", [False, True])
def test_scan_matches_plain_numpy_loop(plastic, getkey):
    net = small_net(getkey())
    rules = coactive_rules() if plastic else None
    key = getkey()
    run = simulate_network(net, rules, key, n_segments=4, segment_steps=100, record=True)
    spikes = np.asarray(run.spikes).reshape(400, net.n)
    volts = np.asarray(run.v).reshape(400, net.n)
    ref_s, ref_v, ref_w = reference_loop(net, rules, key, 400)
    assert ref_s.sum() > 40  # the comparison is not vacuous: every neuron type spikes
    assert ref_s[:, :8].sum() > 0 and ref_s[:, 8:].sum() > 0
    np.testing.assert_array_equal(spikes, ref_s)
    np.testing.assert_allclose(volts, ref_v, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(run.state.weights), ref_w, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(run.counts).sum(0), ref_s.sum(0))
    if plastic:
        changed = np.abs(ref_w - np.asarray(net.weights)) > 1e-9
        for name, m in net.type_masks().items():  # every synapse type moved
            assert changed[np.asarray(m)].any(), name
        assert np.any(ref_w[np.asarray(net.mask)] == 0) or np.any(ref_w >= np.array(net.w_max).min())  # clipping exercised
    np.testing.assert_array_equal(np.asarray(run.state.weights)[~np.asarray(net.mask)], 0.0)


def test_drive_and_continuation_match_loop(getkey):
    """Per-segment drive factors, and a run continued from its final state equals one long run."""
    net = small_net(getkey())
    key = getkey()
    drive = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, (3, net.n)))
    run = simulate_network(net, coactive_rules(), key, drive=drive, segment_steps=50, record=True)
    ref_s, _, ref_w = reference_loop(net, coactive_rules(), key, 150, drive=np.asarray(drive), segment_steps=50)
    np.testing.assert_array_equal(np.asarray(run.spikes).reshape(150, -1), ref_s)
    np.testing.assert_allclose(np.asarray(run.state.weights), ref_w, rtol=1e-10, atol=1e-12)


def test_isi_statistics_and_rates(getkey):
    net = small_net(getkey())
    run = simulate_network(net, None, getkey(), n_segments=4, segment_steps=100, measure_from=1, record=True)
    s = np.asarray(run.spikes).reshape(400, net.n)
    isis = [np.diff(np.flatnonzero(s[:, i]))[np.flatnonzero(s[:, i])[1:] >= 100] * net.dt for i in range(net.n)]
    np.testing.assert_allclose(np.asarray(run.isi_n), [len(x) for x in isis])
    np.testing.assert_allclose(np.asarray(run.isi_sum), [x.sum() for x in isis], atol=1e-12)
    stats = network_statistics(net, run, measure_from=1, segment_steps=100)
    assert float(stats["rate_e"]) == pytest.approx(s[100:, :8].sum() / 8 / (300 * net.dt))
    cvs = [x.std() / x.mean() for x in isis[:8] if len(x) >= 3]
    assert float(stats["cv_isi"]) == pytest.approx(np.mean(cvs))
    assert float(stats["w_ratio_ee"]) == 1.0 and float(stats["saturated"]) == 0.0


def test_saturation_is_counted(getkey):
    net = small_net(getkey(), max_spikes=1)
    run = simulate_network(net, None, getkey(), n_segments=2, segment_steps=100, record=True)
    many = (np.asarray(run.spikes).reshape(200, -1).sum(1) > 1).sum()
    assert many > 0 and int(run.saturated_steps) == many


def test_bad_configuration_errors(getkey):
    with pytest.raises(DiscoveryError, match="n_inh"):
        EINetwork.create(getkey(), n_exc=4, n_inh=0)
    net = small_net(getkey())
    with pytest.raises(DiscoveryError, match="drive"):
        simulate_network(net, None, getkey(), drive=jnp.ones((2, 3)))
    with pytest.raises(DiscoveryError, match="n_segments"):
        simulate_network(net, None, getkey())
