"""The one divergence guard of every optimisation loop (fit, discovery, meta-learning, the GRU reference)."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import plasticinfer as pi
from plasticinfer._optimise import _values_and_grads, guarded_update
from plasticinfer.errors import ConvergenceWarning

SGD = optax.sgd(0.5)


def _step(loss, grads, params, last_ok, alive=True, divergence="stop"):
    return guarded_update(
        params, SGD.init(params), jnp.asarray(loss), grads, jnp.asarray(alive), last_ok,
        optimiser=SGD, divergence=divergence,
    )  # fmt: skip


@pytest.mark.parametrize("divergence", ["stop", "step_back"])
def test_a_finite_step_is_the_optimisers_step(divergence):
    p = {"a": jnp.array([1.0, 2.0])}
    new, _, alive, last_ok, loss, discarded = _step(3.0, {"a": jnp.array([1.0, -2.0])}, p, {"a": jnp.zeros(2)}, divergence=divergence)
    np.testing.assert_allclose(new["a"], [0.5, 3.0])  # p − 0.5·g
    np.testing.assert_allclose(last_ok["a"], [1.0, 2.0])  # the point whose loss was finite
    assert bool(alive) and float(loss) == 3.0 and not bool(discarded)


def test_stop_keeps_the_point_and_stops_for_good():
    p, last = {"a": jnp.array([1.0, 2.0])}, {"a": jnp.array([0.0, 0.0])}
    new, _, alive, last_ok, loss, discarded = _step(jnp.nan, {"a": jnp.ones(2)}, p, last)
    np.testing.assert_array_equal(new["a"], p["a"])
    np.testing.assert_array_equal(last_ok["a"], last["a"])
    assert not bool(alive) and np.isnan(loss) and bool(discarded)
    # once stopped, a finite loss changes nothing either
    again, _, alive, _, loss, _ = _step(1.0, {"a": jnp.ones(2)}, new, last_ok, alive=alive)
    np.testing.assert_array_equal(again["a"], p["a"])
    assert not bool(alive) and np.isnan(loss)


def test_step_back_goes_halfway_to_the_last_finite_point_and_goes_on():
    p, last = {"a": jnp.array([1.0, 2.0])}, {"a": jnp.array([3.0, -2.0])}
    new, _, alive, last_ok, loss, discarded = _step(1.0, {"a": jnp.array([jnp.inf, 0.0])}, p, last, divergence="step_back")
    np.testing.assert_allclose(new["a"], [2.0, 0.0])
    np.testing.assert_array_equal(last_ok["a"], last["a"])  # a non-finite gradient: p was not a finite point
    assert bool(alive) and np.isnan(loss) and bool(discarded)


@pytest.mark.parametrize("divergence", ["stop", "step_back"])
def test_an_update_that_overflows_is_never_applied(divergence):
    p, last = {"a": jnp.array([1.5e308])}, {"a": jnp.array([0.0])}
    new, _, alive, last_ok, loss, discarded = _step(1.0, {"a": jnp.array([-1e308])}, p, last, divergence=divergence)
    assert np.all(np.isfinite(new["a"])) and bool(discarded) and float(loss) == 1.0
    expected = p["a"] if divergence == "stop" else 0.5 * (p["a"] + last["a"])
    np.testing.assert_allclose(new["a"], expected)
    np.testing.assert_array_equal(last_ok["a"], p["a"])  # its loss was finite


def test_unknown_policy_is_refused_before_any_work(key):
    with pytest.raises(pi.ModelError, match="divergence must be one of"):
        pi.discovery.gradient_search(pi.discovery.PC1Objective.create(n_pre=3), key=key, divergence="freeze")


def test_every_optimisation_loop_updates_through_the_guard():
    """No optax update in the library outside guarded_update: one divergence policy implementation."""
    root = Path(pi.__file__).parent
    calls = []
    for path in root.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\b\w+\.update\(\s*(g|grads|grad|gradients)\b", line):
                calls.append(f"{path.relative_to(root)}:{n}")
    assert calls == [f"_optimise.py:{_line_of('optimiser.update(grads, opt_state, params')}"], calls


def _line_of(text):
    lines = (Path(pi.__file__).parent / "_optimise.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_noisy_convergence_diagnostics_tell_a_fall_from_noise():
    """The control: pure noise is rarely called 'still falling', a clear fall almost always is."""
    from plasticinfer._optimise import diagnose

    rng = np.random.default_rng(0)
    t = np.arange(300)
    noise_only = [diagnose(1 + 0.1 * rng.standard_normal(300), tol=1e-4, noisy=True) for _ in range(500)]
    false_alarms = np.mean(["still falling" in m for m in noise_only])
    detected = np.mean([bool(diagnose(1 - 0.01 * t + 0.1 * rng.standard_normal(300), tol=1e-4, noisy=True)) for _ in range(200)])
    assert false_alarms < 0.02 and detected > 0.95, (false_alarms, detected)
    # a loss that is pure noise around a constant never moved, and is called so
    assert np.mean(["never moved" in m for m in noise_only]) > 0.8
    # ... but a loss that fell, and whose first draw happened to be low, did move (the pointwise rule said it never did)
    lucky = [1.1 - 0.1 * (1 - np.exp(-t / 30)) + 0.02 * rng.standard_normal(300) for _ in range(200)]
    for h in lucky:
        h[0] = h.min() - 0.01
    assert all("never moved" in diagnose(h, tol=1e-4) for h in lucky)  # the pointwise rule's false alarm
    assert np.mean(["never moved" in diagnose(h, tol=1e-4, noisy=True) for h in lucky]) < 0.02
    # a loss that fell by orders of magnitude within the first window moved (its spread there dwarfed the fall)
    steep = [np.concatenate([12000.0 * np.exp(-np.arange(30) / 2.0), np.full(270, 3e-4)]) * np.exp(0.1 * rng.standard_normal(300))
             for _ in range(50)]
    assert not any("never moved" in diagnose(h, tol=1e-4, noisy=True) for h in steep)
    # ... and so did a short search (30 generations, windows of 3) whose fall of 1000× came in its first steps
    short = [np.concatenate([[0.572, 0.405, 0.081, 0.03, 0.01, 0.005], np.full(24, 6e-4)]) * np.exp(0.1 * rng.standard_normal(30))
             for _ in range(50)]
    assert not any("never moved" in diagnose(h, tol=1e-4, noisy=True) for h in short)
    # while 30 generations of pure noise are still mostly called flat
    assert np.mean(["never moved" in diagnose(1 + 0.1 * rng.standard_normal(30), tol=1e-4, noisy=True) for _ in range(500)]) > 0.8
    # the single-point rule of deterministic fits would call about half of the pure-noise histories falling
    single = np.mean([bool(diagnose(1 + 0.1 * rng.standard_normal(300), tol=1e-4)) for _ in range(200)])
    assert single > 0.3
    settled = 1 + np.exp(-t / 20) + 0.05 * rng.standard_normal(300)
    stepped_back = settled.copy()
    stepped_back[[50, 120]] = np.nan  # the guard stepped back from two bad steps and went on
    assert diagnose(stepped_back, tol=1e-4, noisy=True) == ""
    stopped = settled.copy()
    stopped[250:] = np.nan
    assert "non-finite at step 250 and the run stopped" in diagnose(stopped, tol=1e-4, noisy=True)


def test_searches_record_convergence_and_warn_for_an_unsettled_best_restart(key):
    from plasticinfer.discovery import AbstractObjective

    class Bowl(AbstractObjective):
        def loss(self, rule, episode):
            return jnp.sum((rule.coeffs - 3.0) ** 2)

        def metrics(self, rule, episode):
            return {"loss": self.loss(rule, episode)}

        def default_rule(self):
            return pi.TaylorRule(["x", "y"], jnp.zeros(2))

        def success(self, metrics):
            return bool(metrics["loss"] < 1e-3)

    kw = dict(key=key, restarts=2, optimiser=optax.adam(0.1), clip_norm=None, progress=False)
    with pytest.warns(ConvergenceWarning, match="best restart .* has not converged: the loss was still falling"):
        short = pi.discovery.gradient_search(Bowl(), steps=10, **kw)
    assert not short.converged.any() and all("still falling" in m for m in short.convergence_messages)
    long = pi.discovery.gradient_search(Bowl(), steps=400, **kw)
    assert long.converged.all() and long.convergence_messages == ("", "")


def _poisoned_bowl(p, poison, x):
    """(p − 1)²; its log term is −inf for a poisoned member on a step whose x is 1."""
    return jnp.sum((p["a"] - 1.0) ** 2) + jnp.log1p(-poison * x)


def test_the_shared_loop_equals_a_plain_loop_of_guarded_steps():
    """run_steps (the loop of fit, discovery, meta-learning and the GRU) against a Python loop of guarded_update:
    a batch of two, member 1 poisoned at step 3, a chunk of 5 steps run by the program of 8."""
    import equinox as eqx

    from plasticinfer._optimise import run_steps, start_steps

    p0 = {"a": jnp.array([[3.0, -1.0], [0.5, 2.0]])}
    poison = jnp.array([0.0, 1.0])
    xs = jnp.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    state, losses = run_steps(
        eqx.Partial(_poisoned_bowl), start_steps(p0, SGD, batched=True), poison, xs, SGD, "stop", 8, jnp.asarray(5), 0
    )
    for m in range(2):
        p, s, alive, best, best_loss, stopped = {"a": p0["a"][m]}, None, jnp.asarray(True), None, np.inf, -1
        s = SGD.init(p)
        for t in range(5):
            loss = _poisoned_bowl(p, poison[m], xs[t])
            grads = {"a": 2.0 * (p["a"] - 1.0)}
            new, s, new_alive, _, rec, _ = guarded_update(p, s, loss, grads, alive, None, optimiser=SGD, divergence="stop")
            if bool(alive) and not bool(new_alive):
                stopped = t
            if bool(new_alive) and float(rec) < best_loss:
                best, best_loss = p, float(rec)
            np.testing.assert_allclose(losses[t, m], rec, rtol=1e-12)
            p, alive = new, new_alive
        np.testing.assert_allclose(state.params["a"][m], p["a"], rtol=1e-12)
        np.testing.assert_allclose(state.best_params["a"][m], best["a"], rtol=1e-12)
        assert float(state.best_loss[m]) == pytest.approx(best_loss, rel=1e-12)
        assert int(state.diverged_at[m]) == stopped and bool(state.alive[m]) == bool(alive)
    assert [int(d) for d in state.diverged_at] == [-1, 3]
    assert np.isnan(np.asarray(losses[5:])).all()  # the program's steps past n do nothing
    assert int(state.step) == 5


def test_a_batched_line_search_reuses_its_stored_loss_and_gradient():
    """L-BFGS stores the loss and gradient of the point it accepted: a batch evaluates them afresh only
    where the stored value is not finite, and not at all when every member has one (inside ``vmap`` a
    condition would compute both branches: one extra loss and gradient per step)."""
    import jax

    from plasticinfer._optimise import _values_and_grads

    calls = []

    def loss_fn(p, data, x):
        jax.debug.callback(lambda: calls.append(1))
        return jnp.sum((p["a"] - data) ** 2)

    opt = optax.lbfgs()
    params = {"a": jnp.array([[1.0, 2.0], [3.0, 4.0]])}
    state = jax.vmap(opt.init)(params)
    data = jnp.array([0.5, -1.0])
    run = jax.jit(lambda p, s: _values_and_grads(loss_fn, p, s, data, None, True, None))

    stored_grad = {"a": jnp.array([[7.0, 8.0], [9.0, 10.0]])}
    fresh_value = jax.vmap(lambda p: loss_fn(p, data, None))(params)
    jax.effects_barrier()
    calls.clear()
    both = optax.tree_utils.tree_set(state, value=jnp.array([0.25, 0.75]), grad=stored_grad)
    value, grad = run(params, both)
    jax.effects_barrier()
    assert calls == []  # nothing evaluated
    np.testing.assert_array_equal(value, [0.25, 0.75])
    np.testing.assert_array_equal(grad["a"], stored_grad["a"])

    one = optax.tree_utils.tree_set(state, value=jnp.array([0.25, jnp.inf]), grad=stored_grad)
    value, grad = run(params, one)
    jax.effects_barrier()
    assert calls  # evaluated, and used only where the stored value was not finite
    np.testing.assert_allclose(value, [0.25, fresh_value[1]])
    np.testing.assert_array_equal(grad["a"][0], stored_grad["a"][0])
    np.testing.assert_allclose(grad["a"][1], 2 * (params["a"][1] - data))
