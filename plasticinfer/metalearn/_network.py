"""A multi-layer rate network whose forward weights learn online from a local rule.

Forward pass, for layers l = 0 … L−1 with W_l of shape (n_{l+1}, n_l)::

    z_{l+1} = W_l · y_l,    y_{l+1} = f(z_{l+1})  (hidden),    y_L = softmax(z_L)  (output)

Errors travel back through a feedback pathway B_l of shape (n_l, n_{l+1})::

    e_L = onehot(label) − y_L
    e_l = (B_l · e_{l+1}) ⊙ f′(z_l)    for hidden layers 0 < l < L
    e_0 = B_0 · e_1                     at the (linear) input

With ``SymmetricFeedback`` B_l = W_lᵀ, so e_l = −∂L/∂z_l (backprop; e_0 = −∂L/∂x); with
``RandomFeedback`` B_l is a fixed random matrix drawn once per network (feedback alignment).
All layers then change at once: W_l ← W_l + rule(y_l, y_{l+1}, e_l, e_{l+1}, W_l).
As an AbstractNetwork (run by ``simulate``): weights ``{"w0": W_0, …}``, state the fixed B_l (``init(key).feedback``),
one trial ``{"x": (n_in,), "label": int}`` per example, output y_L.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._errors import ModelError
from .._networks import AbstractNetwork, _require, _rule_for
from ._terms import LayerSignals, LocalRule


class FeedbackState(eqx.Module):
    """The plastic forward weights W_l and the fixed feedback matrices B_l (empty for symmetric feedback)."""

    weights: tuple[Float[Array, "n_out n_in"], ...]
    feedback: tuple[Float[Array, "n_in n_out"], ...]


class AbstractFeedback(eqx.Module):
    """How errors are carried from a layer's output back to its input."""

    @abc.abstractmethod
    def init(self, key: PRNGKeyArray, weights: tuple[Array, ...], scale: float) -> tuple[Array, ...]:
        """The fixed matrices this pathway needs (drawn once per network)."""

    @abc.abstractmethod
    def matrix(self, state: FeedbackState, layer: int) -> Float[Array, "n_in n_out"]:
        """B_l, mapping e_{l+1} (n_{l+1},) to layer l (n_l,)."""


def _scaled_normals(key: PRNGKeyArray, shapes: list[tuple[int, int]], scale: float, dtype) -> tuple[Array, ...]:
    """Matrices of scale·N(0, 1/n_cols) entries, one per shape, from a single draw (one RNG op compiles faster)."""
    sizes = [a * b for a, b in shapes]
    flat = jax.random.normal(key, (sum(sizes),), dtype)
    out, start = [], 0
    for (rows, cols), n in zip(shapes, sizes):
        out.append(scale * flat[start : start + n].reshape(rows, cols) / jnp.sqrt(jnp.asarray(cols, dtype)))
        start += n
    return tuple(out)


class RandomFeedback(AbstractFeedback):
    """Feedback alignment: fixed random B_l, drawn like the forward weights (entries scale·N(0, 1/n_l))."""

    def init(self, key, weights, scale):
        return tuple(b.T for b in _scaled_normals(key, [w.shape for w in weights], scale, weights[0].dtype))

    def matrix(self, state, layer):
        return state.feedback[layer]


class SymmetricFeedback(AbstractFeedback):
    """Backprop's symmetric feedback, B_l = W_lᵀ (the reference, not biologically local)."""

    def init(self, key, weights, scale):
        return ()

    def matrix(self, state, layer):
        return state.weights[layer].T


def sharp_softplus(z: Array, beta: float = 10.0) -> Array:
    """softplus(β·z)/β: a smooth ReLU (β = 10 by default). Plain softplus (β = 1) sits near log 2 ≈ 0.69 at
    z = 0, so its activities share a large common mode that online SGD learns slowly from."""
    return jax.nn.softplus(beta * z) / beta


def _derivative(f: Callable[[Array], Array], z: Array) -> Array:
    """Elementwise f′(z) for an elementwise activation f."""
    return jax.jvp(f, (z,), (jnp.ones_like(z),))[1]


class FeedbackNetwork(AbstractNetwork):
    """Rate network ``sizes[0] → … → sizes[-1]`` with a softmax output, learning online from a local rule.

    Attributes:
        sizes: layer widths, input first and number of classes last, e.g. ``(64, 100, 80, 5)``.
        feedback: ``RandomFeedback()`` (feedback alignment) or ``SymmetricFeedback()`` (backprop).
        activation: elementwise nonlinearity of the hidden layers (default :func:`sharp_softplus`, β = 10).
        init_scale: weights start as init_scale·N(0, 1/n_in); random feedback is drawn the same way.
    """

    sizes: tuple[int, ...] = eqx.field(static=True, default=(64, 100, 80, 5))
    feedback: AbstractFeedback = eqx.field(default_factory=RandomFeedback)
    activation: Callable[[Array], Array] = eqx.field(static=True, default=sharp_softplus)
    init_scale: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if len(self.sizes) < 2 or any(int(n) < 1 for n in self.sizes):
            raise ModelError(f"FeedbackNetwork.sizes needs ≥ 2 positive widths (input … classes); got {self.sizes}")
        if self.sizes[-1] < 2:
            raise ModelError(f"the output layer needs ≥ 2 classes; got sizes {self.sizes}")
        if not isinstance(self.feedback, AbstractFeedback):
            raise ModelError(
                f"FeedbackNetwork.feedback must be RandomFeedback() (feedback alignment) or SymmetricFeedback() (backprop); "
                f"got {self.feedback!r}"
            )

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_classes(self) -> int:
        return self.sizes[-1]

    def weight_shapes(self) -> dict[str, tuple[int, int]]:
        return {f"w{l}": (n_out, n_in) for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]))}

    def layers(self, weights: dict[str, Array]) -> tuple[Array, ...]:
        """The weights dict as the tuple (W_0, …, W_{L−1}) of :class:`FeedbackState`."""
        return tuple(weights[f"w{l}"] for l in range(self.n_layers))

    def init_weights(self, key: PRNGKeyArray, scale: float | None = None, dtype=float) -> dict[str, Array]:
        """The forward weights :meth:`init` draws with ``key`` (``init_scale``·N(0, 1/n_in)), as a dict."""
        if scale is not None:
            raise ModelError("FeedbackNetwork's weight scale is its init_scale; build the network with init_scale=… instead")
        return dict(zip(self.weight_shapes(), self.init(key, dtype).weights))

    def initial_state(self, weights):
        raise ModelError("FeedbackNetwork's state is its feedback matrices, drawn with the weights: state=network.init(key).feedback")

    def init(self, key: PRNGKeyArray, dtype=float) -> FeedbackState:
        """Fresh random forward weights and feedback matrices."""
        k_w, k_b = jax.random.split(key)
        weights = _scaled_normals(k_w, list(self.weight_shapes().values()), self.init_scale, dtype)
        return FeedbackState(weights, self.feedback.init(k_b, weights, self.init_scale))

    def forward(self, weights: tuple[Array, ...], x: Float[Array, "... n_in"]) -> tuple[list[Array], list[Array]]:
        """Activities [x, y_1, …, y_L] (y_L the class probabilities) and pre-activations [z_1, …, z_L]."""
        ys, zs = [x], []
        for l, w in enumerate(weights):
            z = ys[-1] @ w.T
            zs.append(z)
            ys.append(jax.nn.softmax(z, axis=-1) if l == self.n_layers - 1 else self.activation(z))
        return ys, zs

    def logits(self, weights: tuple[Array, ...], x: Float[Array, "... n_in"]) -> Array:
        return self.forward(weights, x)[1][-1]

    def loss(self, weights: tuple[Array, ...], x: Float[Array, "batch n_in"], labels: Int[Array, " batch"]) -> Array:
        """Mean cross-entropy of the labels (works for a single example too)."""
        logp = jax.nn.log_softmax(self.logits(weights, x), axis=-1)
        return -jnp.mean(jnp.take_along_axis(jnp.atleast_2d(logp), jnp.atleast_1d(labels)[:, None], axis=-1))

    def accuracy(self, weights: tuple[Array, ...], x: Float[Array, "batch n_in"], labels: Int[Array, " batch"]) -> Array:
        pred = jnp.argmax(self.logits(weights, x), axis=-1)
        return jnp.mean((pred == labels).astype(x.dtype))

    def signals(self, state: FeedbackState, x: Float[Array, " n_in"], label: Int[Array, ""]) -> list[LayerSignals]:
        """Per layer, the local quantities the rule may use, for one example."""
        ys, zs = self.forward(state.weights, x)
        e = [None] * (self.n_layers + 1)
        e[-1] = jax.nn.one_hot(label, self.n_classes, dtype=x.dtype) - ys[-1]
        for l in range(self.n_layers - 1, -1, -1):
            back = self.feedback.matrix(state, l) @ e[l + 1]
            e[l] = back * _derivative(self.activation, zs[l - 1]) if l > 0 else back
        return [LayerSignals(ys[l], ys[l + 1], e[l], e[l + 1], w) for l, w in enumerate(state.weights)]

    def step(self, rule, weights: dict[str, Array], state: tuple[Array, ...], trial: dict[str, Array]):
        """One online update on one example: every layer changes by rule(its local signals); ``state`` (B_l) stays."""
        x, label = _require(trial, "x", "FeedbackNetwork"), _require(trial, "label", "FeedbackNetwork")
        for name in self.weight_shapes():
            if not isinstance(_rule_for(rule, name), LocalRule):
                raise ModelError(
                    f"FeedbackNetwork calls its rule with a layer's LayerSignals, so it needs a metalearn.LocalRule "
                    f"(got {type(_rule_for(rule, name)).__name__} for {name!r})"
                )
        signals = self.signals(FeedbackState(self.layers(weights), state), x, label)
        return {f"w{l}": s.w + _rule_for(rule, f"w{l}")(s) for l, s in enumerate(signals)}, state, signals[-1].y_post
