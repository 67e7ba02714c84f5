"""Networks: how activity follows from weights and inputs, and which weights the rule changes.

A network turns one trial's inputs into an output and applies the plasticity rule:

    new_weights, new_state, output = network.step(rule, weights, state, trial)

``weights`` is a dict of named matrices (``network.weight_shapes()``), ``state`` any
pytree the network carries between trials (``network.initial_state(weights)``), and
``trial`` a dict of this trial's inputs. ``rule`` is either one rule used for every
plastic matrix, or a dict mapping a weight name to its rule.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._errors import ModelError
from ._rules import AbstractRule, identity  # noqa: F401 (identity: the default activation, named in results files)


def check_sizes(network, *names: str) -> None:
    """Refuse a layer size that is not a whole number ≥ 1 (``FeedForward(2.5, 2)`` built a layer of 2.5 inputs)."""
    for name in names:
        value = getattr(network, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ModelError(f"{type(network).__name__}.{name} must be a whole number ≥ 1 (a layer size); got {value!r}")


def _rule_for(rule: AbstractRule | Mapping[str, AbstractRule], name: str) -> AbstractRule:
    if isinstance(rule, Mapping):
        if name not in rule:
            raise ModelError(f"no rule given for plastic weights {name!r}; rules were given for {sorted(rule)}")
        return rule[name]
    return rule


def _require(trial: Mapping[str, Array], name: str, network: str) -> Array:
    if name not in trial:
        raise ModelError(f"{network} needs trial input {name!r}; got inputs {sorted(trial)}")
    return trial[name]


class AbstractNetwork(eqx.Module):
    """How activity follows from weights and inputs on one trial, and where the rule applies."""

    @abc.abstractmethod
    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the weight matrices."""

    @abc.abstractmethod
    def step(self, rule, weights: dict[str, Array], state: Any, trial: dict[str, Array]) -> tuple[dict[str, Array], Any, Array]:
        """One trial: returns (new weights, new state, output for the observation model)."""

    def initial_state(self, weights: dict[str, Array]) -> Any:
        """State carried between trials (none by default)."""
        return None

    def held_fields(self) -> frozenset[str]:
        """Fields a fit leaves unchanged or the network never reads: not parameters, so neither sampled nor
        counted in AIC/BIC. None by default."""
        return frozenset()

    @staticmethod
    def rule_for(rule: AbstractRule | Mapping[str, AbstractRule], name: str) -> AbstractRule:
        """The rule of weight matrix ``name``: ``rule`` itself, or its entry when users give a dict of rules by name."""
        return _rule_for(rule, name)

    def init_weights(self, key: PRNGKeyArray, scale: float = 0.1, dtype=float) -> dict[str, Array]:
        """Weights drawn as ``scale · N(0, 1)`` for every matrix."""
        shapes = self.weight_shapes()
        keys = jax.random.split(key, len(shapes))
        return {name: scale * jax.random.normal(k, shape, dtype) for k, (name, shape) in zip(keys, sorted(shapes.items()))}


class FeedForward(AbstractNetwork):
    """One plastic layer: y = f(W x). Trial inputs: ``x`` (n_pre,) or (batch, n_pre); optional ``reward``.

    The output is y with the same batch layout as x.
    """

    n_pre: int = eqx.field(static=True)
    n_post: int = eqx.field(static=True)
    activation: Callable = eqx.field(static=True, default=identity)

    def __check_init__(self):
        check_sizes(self, "n_pre", "n_post")

    def weight_shapes(self):
        return {"w": (self.n_post, self.n_pre)}

    def step(self, rule, weights, state, trial):
        x = _require(trial, "x", "FeedForward")
        w = weights["w"]
        # one sample: w @ x reads W in its stored order (x @ w.T made XLA:CPU copy Wᵀ every trial)
        y = self.activation(w @ x if x.ndim == 1 else x @ w.T)
        reward = trial.get("reward", jnp.zeros(x.shape[:-1], x.dtype))
        dw = _rule_for(rule, "w")(x, y, w, reward)
        return {"w": w + dw}, state, y


class Recurrent(AbstractNetwork):
    """Rate network y_t = f(W_ff x_t + W_rec y_{t−1}); ``plastic`` names which of ``"ff"``, ``"rec"`` learn.

    The rule for the recurrent matrix sees pre = y_{t−1}, post = y_t.
    Trial inputs: ``x`` (n_in,); optional ``reward``. State: the previous activity.
    """

    n_in: int = eqx.field(static=True)
    n_rec: int = eqx.field(static=True)
    activation: Callable = eqx.field(static=True, default=jnp.tanh)
    plastic: tuple[str, ...] = eqx.field(static=True, default=("ff", "rec"))

    def __check_init__(self):
        check_sizes(self, "n_in", "n_rec")
        if not set(self.plastic) <= {"ff", "rec"}:
            raise ModelError(f"Recurrent.plastic must be a subset of ('ff', 'rec'); got {self.plastic}")

    def weight_shapes(self):
        return {"ff": (self.n_rec, self.n_in), "rec": (self.n_rec, self.n_rec)}

    def initial_state(self, weights):
        return jnp.zeros((self.n_rec,), weights["ff"].dtype)

    def step(self, rule, weights, state, trial):
        x = _require(trial, "x", "Recurrent")
        y_prev = state
        y = self.activation(weights["ff"] @ x + weights["rec"] @ y_prev)
        reward = trial.get("reward", jnp.zeros((), x.dtype))
        new = dict(weights)
        if "ff" in self.plastic:
            new["ff"] = weights["ff"] + _rule_for(rule, "ff")(x, y, weights["ff"], reward)
        if "rec" in self.plastic:
            new["rec"] = weights["rec"] + _rule_for(rule, "rec")(y_prev, y, weights["rec"], reward)
        return new, y, y


class MultiLayer(AbstractNetwork):
    """A chain of rate layers y_{l+1} = f(W_l y_l); ``plastic`` lists which layer indices learn.

    Weights are named ``"w0"``, ``"w1"``, …; a dict of rules may give each plastic layer its own.
    Trial inputs: ``x``; optional ``reward``. Output: the last layer's activity.
    """

    sizes: tuple[int, ...] = eqx.field(static=True)
    activation: Callable = eqx.field(static=True, default=jnp.tanh)
    plastic: tuple[int, ...] = eqx.field(static=True, default=(0,))
    output_activation: Callable = eqx.field(static=True, default=identity)

    def __check_init__(self):
        if len(self.sizes) < 2:
            raise ModelError(f"MultiLayer needs at least two sizes (input, output); got {self.sizes}")
        bad = [i for i in self.plastic if not 0 <= i < len(self.sizes) - 1]
        if bad:
            raise ModelError(f"MultiLayer.plastic has layer indices {bad} outside 0..{len(self.sizes) - 2}")

    def weight_shapes(self):
        return {f"w{i}": (self.sizes[i + 1], self.sizes[i]) for i in range(len(self.sizes) - 1)}

    def step(self, rule, weights, state, trial):
        x = _require(trial, "x", "MultiLayer")
        reward = trial.get("reward", jnp.zeros(x.shape[:-1], x.dtype))
        new = dict(weights)
        h = x
        n_layers = len(self.sizes) - 1
        for i in range(n_layers):
            name = f"w{i}"
            act = self.output_activation if i == n_layers - 1 else self.activation
            out = act(h @ weights[name].T)
            if i in self.plastic:
                new[name] = weights[name] + _rule_for(rule, name)(h, out, weights[name], reward)
            h = out
        return new, state, h


class ChoiceCircuit(AbstractNetwork):
    """Two-alternative (or n-alternative) choice circuit, e.g. a fly choosing between two odours.

    Each option k has a cue pattern c_k (one-hot, or a sparse Kenyon-cell-like pattern);
    an output neuron's drive for option k is d_k = w·c_k. The observation model turns the
    drives into choice probabilities. After the trial the rule updates w with
    pre = the chosen cue, post = its drive, and reward r — or r − E[r] when
    ``reward_expectation`` is on, with E[r] ← E[r] + ρ·(r − E[r]) and the rate
    ρ = sigmoid(``expectation_logit``) fitted like any other parameter.

    Trial inputs: ``cues`` (n_options, n_in), ``choice`` (int, the observed or sampled
    choice), ``reward``. Output: the drives (n_options,).
    """

    n_in: int = eqx.field(static=True)
    reward_expectation: bool = eqx.field(static=True, default=False)
    expectation_logit: Float[Array, ""] = eqx.field(default_factory=lambda: jnp.asarray(-1.0), converter=jnp.asarray)

    def held_fields(self) -> frozenset[str]:
        return frozenset() if self.reward_expectation else frozenset({"expectation_logit"})  # never read without it

    def weight_shapes(self):
        return {"w": (1, self.n_in)}

    @property
    def expectation_rate(self) -> Array:
        return jax.nn.sigmoid(self.expectation_logit)

    def initial_state(self, weights):
        return jnp.zeros((), weights["w"].dtype)

    def drives(self, weights, cues):
        return cues @ weights["w"][0]

    def step(self, rule, weights, state, trial):
        cues = _require(trial, "cues", "ChoiceCircuit")
        choice = _require(trial, "choice", "ChoiceCircuit")
        reward = _require(trial, "reward", "ChoiceCircuit").astype(cues.dtype)
        w = weights["w"]
        d = self.drives(weights, cues)
        onehot = jax.nn.one_hot(choice, cues.shape[0], dtype=cues.dtype)
        pre = (onehot @ cues)[None, :]
        post = (onehot @ d)[None, None]
        if self.reward_expectation:
            signal = reward - state
            new_state = state + self.expectation_rate * (reward - state)
        else:
            signal, new_state = reward, state
        dw = _rule_for(rule, "w")(pre, post, w, signal[None])
        return {"w": w + dw}, new_state, d


def one_hot_cues(n_options: int = 2, dtype=float) -> Array:
    """Cue patterns for one-hot odour coding: the identity matrix."""
    return jnp.eye(n_options, dtype=dtype)


def sparse_cues(key: PRNGKeyArray, n_options: int, n_in: int, active_fraction: float = 0.1, dtype=float) -> Array:
    """Sparse random binary patterns (Kenyon-cell-like), one row per option, at least one unit active."""
    if not 0 < active_fraction <= 1:
        raise ModelError(f"active_fraction must be in (0, 1]; got {active_fraction}")
    k = max(1, int(round(active_fraction * n_in)))
    keys = jax.random.split(key, n_options)
    rows = [jnp.zeros(n_in, dtype).at[jax.random.permutation(kk, n_in)[:k]].set(1.0) for kk in keys]
    return jnp.stack(rows)


__all__ = [
    "AbstractNetwork",
    "FeedForward",
    "Recurrent",
    "MultiLayer",
    "ChoiceCircuit",
    "one_hot_cues",
    "sparse_cues",
    "identity",
]
