"""Registry of components under test: a new rule or network is one line here and inherits the contract tests."""

import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

import plasticinfer as pi

REPO = Path(__file__).resolve().parents[1]

# a families study's speeds sentence (FamiliesResult.markdown): results files hold no wall times, so a loaded
# study's markdown says this instead
SPEEDS = re.compile(r"at [\d.]+ per minute \(.*?\); NPE training [\d.]+ s\.")


def as_loaded(markdown: str) -> str:
    """A freshly run study's markdown as its loaded copy gives it (speeds not saved in results files)."""
    return SPEEDS.sub("(speeds not saved in results files).", markdown)


def run_tutorial(name: str, out: Path, *, small: bool = True, cwd: Path | None = None, timeout: int = 600) -> str:
    """Run ``tutorials/<name>`` as a plain script writing to ``out``; assert it succeeds; return its stdout.

    This checkout comes first on the path (not an installed copy), headless matplotlib, the shared
    data folder unless ``PLASTICINFER_DATA_DIR`` names another, and ``small`` sets the tutorial's small size.
    """
    env = dict(os.environ, PLASTICINFER_TUTORIAL_OUT=str(out), MPLBACKEND="Agg")
    if small:
        env["PLASTICINFER_TUTORIAL_SMALL"] = "1"
    env.setdefault("PLASTICINFER_DATA_DIR", str(REPO.parent / "shared" / "data"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(REPO / "tutorials" / name)], cwd=cwd or out, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def interrupt_chunk(monkeypatch, on_call: int) -> list:
    """Make the optimisation loop's ``on_call``-th compiled chunk raise ``KeyboardInterrupt`` (a Ctrl-C
    during it); returns the list that records the calls."""
    from plasticinfer import _optimise

    real, calls = _optimise.run_steps, []

    def chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == on_call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(_optimise, "run_steps", chunk)
    return calls


def interrupt_nuts_chunk(monkeypatch, chunks: int) -> list:
    """Make NUTS's ``chunks + 1``-th compiled chunk raise ``KeyboardInterrupt`` (a Ctrl-C during it);
    returns the list that records the calls (``pytest.MonkeyPatch()`` serves outside a test too)."""
    from plasticinfer.bayes._nuts import NUTSRunner

    real, calls = NUTSRunner._advance_fn, []

    def advance_fn(self, length):
        fn = real(self, length)

        def wrapped(*args):
            calls.append(1)
            if len(calls) == chunks + 1:
                raise KeyboardInterrupt
            return fn(*args)

        return wrapped

    monkeypatch.setattr(NUTSRunner, "_advance_fn", advance_fn)
    return calls


def _taylor(key):
    r = pi.TaylorRule.full(("x", "y", "w", "r"), 2)
    return pi.TaylorRule(r.terms, 0.01 * jax.random.normal(key, (len(r.terms),)), learning_rate=1.0)


RULES = {
    "taylor81": _taylor,
    "oja": lambda key: pi.oja(0.05),
    "mlp": lambda key: pi.MLPRule(width=8, depth=2, key=key, learning_rate=0.05, final_scale=1.0),
    "covariance": lambda key: pi.CovarianceRule(0.05),
    # the pair-based trace rule in its rate form (TraceRule shares its update through AbstractPairRule)
    "pair": lambda key: pi.discovery.PairRule(-0.01, 0.02, 0.05, 0.03, 0.02, 0.03, learning_rate=0.5),
}


def _ff_trials(key, n):
    k1, k2 = jax.random.split(key)
    return {"x": jax.random.normal(k1, (n, 4)), "reward": jax.random.bernoulli(k2, 0.5, (n,)).astype(float)}


def _batched_ff_trials(key, n):
    k1, k2 = jax.random.split(key)
    return {"x": jax.random.normal(k1, (n, 5, 4)), "reward": jax.random.bernoulli(k2, 0.5, (n, 5)).astype(float)}


def _choice_trials(key, n):
    k1, k2 = jax.random.split(key)
    return {
        "cues": jnp.broadcast_to(jnp.eye(2), (n, 2, 2)),
        "choice": jax.random.bernoulli(k1, 0.5, (n,)).astype(jnp.int32),
        "reward": jax.random.bernoulli(k2, 0.5, (n,)).astype(float),
    }


def _rec_trials(key, n):
    return {"x": jax.random.normal(key, (n, 4))}


# name -> (network, trial generator, whether a batch of samples per trial is used)
NETWORKS = {
    "feedforward": (pi.FeedForward(4, 3), _ff_trials),
    "feedforward_batched": (pi.FeedForward(4, 3, activation=jnp.tanh), _batched_ff_trials),
    "recurrent": (pi.Recurrent(4, 3), _rec_trials),
    "multilayer": (pi.MultiLayer((4, 5, 3), plastic=(0, 1)), _ff_trials),
    "choice": (pi.ChoiceCircuit(2), _choice_trials),
    "choice_rpe": (pi.ChoiceCircuit(2, reward_expectation=True), _choice_trials),
}


def _gaussian_outputs(key, shape):
    return jax.random.normal(key, shape)


def _choice_drives(key, shape):
    return jax.random.normal(key, shape + (2,))


def _bernoulli_p(obs_model, drives):
    return obs_model.probability(drives)


# name -> (observation model, network-output generator (key, shape) -> outputs, scipy.stats frozen
# distribution for given (model, outputs), whether observations are discrete)
def _scipy_gaussian(m, out):
    import scipy.stats

    return scipy.stats.norm(loc=out, scale=float(m.sigma))


def _scipy_bernoulli(m, out):
    import scipy.stats

    return scipy.stats.bernoulli(p=m.probability(out))


def _scipy_poisson(m, out):
    import scipy.stats

    return scipy.stats.poisson(mu=m.rate(out))


OBSERVATIONS = {
    "gaussian": (pi.GaussianActivity(0.3), _gaussian_outputs, _scipy_gaussian, False),
    "bernoulli": (pi.BernoulliChoice(1.5, bias=0.2), _choice_drives, _scipy_bernoulli, True),
    "bernoulli_lapse": (pi.BernoulliChoice(2.0, lapse=0.1), _choice_drives, _scipy_bernoulli, True),
    "poisson": (pi.PoissonCounts(dt=2.0), _gaussian_outputs, _scipy_poisson, True),
}


# --- discovery objectives: (objective, the rule to check at, finite-difference step or None) ----------------------------
# The rule is a function of (objective, key); a step of None marks an objective whose loss is not differentiable
# (spike counts), searched by CMA-ES only. Sizes are tiny: the contract tests check the plumbing, not the science.


def _pc1_case(key):
    from plasticinfer.discovery import PC1Objective

    obj = PC1Objective.create(None, 3, n_networks=2, n_steps=12, n_samples=5)
    rule = obj.default_rule()
    coeffs = rule.with_coefficients({"x*y": 1.0, "y^2*w": -1.0}).coeffs + 0.05 * jax.random.normal(key, rule.coeffs.shape)
    return obj, _with_coeffs(rule, coeffs)


def _with_coeffs(rule, coeffs):
    import equinox as eqx

    return eqx.tree_at(lambda r: r.coeffs, rule, coeffs)


def _pca_network_case(key):
    from plasticinfer.discovery import PCANetworkObjective

    obj = PCANetworkObjective.create(None, 6, 2, n_networks=1, n_steps=8, n_samples=4)
    ref = obj.reference_rule()
    base = {
        "ff": pi.TaylorRule.full(("x", "y", "w"), 2, max_degree=3, learning_rate=0.1),
        "lateral": pi.TaylorRule.full(("x", "y", "w"), 1, learning_rate=0.1),
    }
    k_ff, k_lat = jax.random.split(key)
    rules = {}
    for (name, rule), k in zip(base.items(), (k_ff, k_lat)):
        rule = rule.with_coefficients({n: c for n, c in ref[name].coefficients.items() if n in rule.names})
        rules[name] = _with_coeffs(rule, rule.coeffs + 0.05 * jax.random.normal(k, rule.coeffs.shape))
    return obj, rules


def _homeostasis_case(key):
    from plasticinfer.discovery import HomeostasisObjective, TraceRule

    obj = HomeostasisObjective.create(n_steps=60, measure_steps=10, n_networks=2, fluctuation=0.3, n_samples=3)
    # exact gradients: inside the clamp and the rectifier's linear range the gradient leak plays no part
    return obj, TraceRule(-0.2, 0.1, 0.5, 0.5, learning_rate=1e-3)


def _lif_case(key):
    from plasticinfer.discovery import LIFHomeostasisObjective, TraceRule

    return LIFHomeostasisObjective.create(duration=0.2, measure=0.1, window=0.1, n_networks=2), TraceRule.vogels(5.0)


OBJECTIVES = {
    "pc1": (_pc1_case, 1e-6),
    "pca_network": (_pca_network_case, 1e-6),
    "homeostasis": (_homeostasis_case, 1e-5),
    "lif_homeostasis": (_lif_case, None),
}
