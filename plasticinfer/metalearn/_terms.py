"""Candidate local terms for a layer's plasticity rule, and the sparse rule built from them.

A layer l maps its input activity y_l (n_l,) through W_l (n_{l+1}, n_l) to its output y_{l+1}.
Every term is a function of quantities available at that layer only:

- ``y_l``, ``y_{l+1}``: the layer's input and output activity;
- ``W``: the layer's weight matrix;
- ``e_{l+1}``: the error delivered to the layer's output neurons by the feedback pathway, and
  ``e_l`` the error at its input neurons (see :mod:`._network` for how they are computed).

Errors point *downhill*: at the output e_L = onehot(label) − softmax(z_L), so that with symmetric
feedback (B = Wᵀ) the pseudo-gradient term e_{l+1}·y_lᵀ equals −∂L/∂W_l, and a positive
coefficient means "learn".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._errors import ModelError
from .._rules import AbstractRule


class LayerSignals(eqx.Module):
    """What one layer's synapses can see during one online step (a single example)."""

    y_pre: Float[Array, " n_in"]
    y_post: Float[Array, " n_out"]
    e_pre: Float[Array, " n_in"]
    e_post: Float[Array, " n_out"]
    w: Float[Array, "n_out n_in"]


@dataclass(frozen=True)
class LocalTerm:
    """One candidate term F_k(y_l, y_{l+1}, e_l, e_{l+1}, W) → a matrix shaped like W.

    Attributes:
        name: the term as an equation, e.g. ``"e_{l+1}·y_lᵀ"`` (used in printed rules and results).
        alias: a short identifier, e.g. ``"pseudo_gradient"`` (accepted wherever a name is).
        description: one line for documentation.
        fn: the formula, evaluated on :class:`LayerSignals`.
    """

    name: str
    alias: str
    description: str
    fn: Callable[[LayerSignals], Array]

    def __call__(self, s: LayerSignals) -> Array:
        return self.fn(s)

    def __str__(self) -> str:
        return self.name


def _outer(a: Array, b: Array) -> Array:
    return a[:, None] * b[None, :]


PSEUDO_GRADIENT = LocalTerm(
    "e_{l+1}·y_lᵀ",
    "pseudo_gradient",
    "feedback-alignment pseudo-gradient; equals backprop's −∂L/∂W_l when the feedback is B = Wᵀ",
    lambda s: _outer(s.e_post, s.y_pre),
)
ERROR_HEBBIAN = LocalTerm(
    "e_{l+1}·e_lᵀ",
    "error_hebbian",
    "Hebbian product of the errors on both sides of the synapse (drives W towards the feedback's transpose)",
    lambda s: _outer(s.e_post, s.e_pre),
)
OJA = LocalTerm(
    "y_{l+1}·y_lᵀ − diag(y_{l+1}²)·W",
    "oja",
    "Oja's rule: Hebbian growth with a postsynaptic normalising decay",
    lambda s: _outer(s.y_post, s.y_pre) - (s.y_post * s.y_post)[:, None] * s.w,
)
HEBBIAN = LocalTerm(
    "y_{l+1}·y_lᵀ",
    "hebbian",
    "plain Hebbian product of post- and presynaptic activity",
    lambda s: _outer(s.y_post, s.y_pre),
)
DECAY = LocalTerm("W", "decay", "weight decay (with a negative coefficient)", lambda s: s.w)
POST_ACTIVITY_PRE_ERROR = LocalTerm(
    "y_{l+1}·e_lᵀ",
    "post_activity_pre_error",
    "postsynaptic activity times the error at the presynaptic neurons",
    lambda s: _outer(s.y_post, s.e_pre),
)
ERROR_ONLY = LocalTerm(
    "e_{l+1}·1ᵀ",
    "error_only",
    "every synapse onto a neuron moves with that neuron's error (presynaptically unspecific)",
    lambda s: jnp.broadcast_to(s.e_post[:, None], s.w.shape),
)
THREE_FACTOR = LocalTerm(
    "(e_{l+1}⊙y_{l+1})·y_lᵀ",
    "three_factor",
    "pseudo-gradient gated by postsynaptic activity (error × post × pre)",
    lambda s: _outer(s.e_post * s.y_post, s.y_pre),
)
ERROR_DECAY = LocalTerm(
    "diag(e_{l+1}²)·W",
    "error_decay",
    "decay of a neuron's incoming weights in proportion to its squared error",
    lambda s: (s.e_post * s.e_post)[:, None] * s.w,
)
PRE_DECAY = LocalTerm(
    "W·diag(y_l²)",
    "pre_decay",
    "decay of a synapse in proportion to its squared presynaptic activity",
    lambda s: s.w * (s.y_pre * s.y_pre)[None, :],
)

TERM_POOL: tuple[LocalTerm, ...] = (
    PSEUDO_GRADIENT,
    ERROR_HEBBIAN,
    OJA,
    HEBBIAN,
    DECAY,
    POST_ACTIVITY_PRE_ERROR,
    ERROR_ONLY,
    THREE_FACTOR,
    ERROR_DECAY,
    PRE_DECAY,
)
"""The default candidate terms, in this order. Oja and Hebb together span Hebb and the postsynaptic decay."""


def find_term(name: str | LocalTerm, pool: Sequence[LocalTerm] = TERM_POOL) -> LocalTerm:
    """Look a term up by its equation (``"e_{l+1}·y_lᵀ"``) or alias (``"pseudo_gradient"``)."""
    if isinstance(name, LocalTerm):
        return name
    for t in pool:
        if name in (t.name, t.alias):
            return t
    known = ", ".join(f"{t.alias} ({t.name})" for t in pool)
    raise ModelError(f"unknown term {name!r}; known terms: {known}")


class LocalRule(AbstractRule):
    """ΔW_l = η · Σ_k θ_k · F_k(y_l, y_{l+1}, e_l, e_{l+1}, W_l), the same θ for every layer.
    An AbstractRule called with a layer's :class:`LayerSignals` record, not (pre, post, weight, reward).

    Attributes:
        coeffs: one coefficient θ_k per term (the meta-learned parameters).
        terms: the candidate terms, in the order of ``coeffs``.
        learning_rate: the overall rate η (not meta-learned).
    """

    coeffs: Float[Array, " terms"]
    terms: tuple[LocalTerm, ...] = eqx.field(static=True)
    learning_rate: float = eqx.field(static=True)

    def __init__(
        self,
        terms: Sequence[LocalTerm | str] = TERM_POOL,
        coeffs: Float[Array, " terms"] | Sequence[float] | None = None,
        *,
        learning_rate: float = 0.05,
        dtype=None,
    ):
        terms = tuple(find_term(t) for t in terms)
        if not terms:
            raise ModelError("LocalRule needs at least one term")
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ModelError(f"LocalRule terms must be distinct; got {names}")
        if coeffs is None:
            coeffs = jnp.zeros(len(terms), dtype=dtype or float)
        coeffs = jnp.asarray(coeffs, dtype=dtype)
        if not jnp.issubdtype(coeffs.dtype, jnp.floating):
            coeffs = coeffs.astype(float)
        if coeffs.shape != (len(terms),):
            raise ModelError(f"LocalRule got {len(terms)} terms but coefficients of shape {coeffs.shape}")
        if not learning_rate > 0:
            raise ModelError(f"learning_rate must be positive, got {learning_rate}")
        self.coeffs = coeffs
        self.terms = terms
        self.learning_rate = float(learning_rate)

    # ---- constructors --------------------------------------------------------------

    @classmethod
    def from_terms(cls, coefficients: Mapping[str, float], *, learning_rate: float = 0.05, dtype=None) -> "LocalRule":
        """A rule with exactly the named terms, e.g. ``{"pseudo_gradient": 1.0, "decay": -0.01}``."""
        terms = [find_term(k) for k in coefficients]
        return cls(terms, [float(v) for v in coefficients.values()], learning_rate=learning_rate, dtype=dtype)

    @classmethod
    def pool(
        cls,
        init: Mapping[str, float] | None = None,
        *,
        terms: Iterable[str | LocalTerm] = TERM_POOL,
        learning_rate: float = 0.05,
        dtype=None,
    ) -> "LocalRule":
        """Every candidate term, starting from ``init`` (default: plain feedback alignment, θ_pg = 1)."""
        terms = tuple(find_term(t) for t in terms)
        init = {PSEUDO_GRADIENT.name: 1.0} if init is None else {find_term(k, terms).name: float(v) for k, v in init.items()}
        return cls(terms, [init.get(t.name, 0.0) for t in terms], learning_rate=learning_rate, dtype=dtype)

    @classmethod
    def feedback_alignment(cls, coefficient: float = 1.0, *, learning_rate: float = 0.05, dtype=None) -> "LocalRule":
        """The plain pseudo-gradient rule ΔW = η·θ·e_{l+1}·y_lᵀ (backprop when the feedback is symmetric)."""
        return cls((PSEUDO_GRADIENT,), [coefficient], learning_rate=learning_rate, dtype=dtype)

    # ---- evaluation ----------------------------------------------------------------

    def __call__(self, signals: LayerSignals, *core_args) -> Float[Array, "n_out n_in"]:
        if core_args or not isinstance(signals, LayerSignals):
            raise ModelError(
                "LocalRule is a meta-learning rule: metalearn.FeedbackNetwork calls it with a layer's LayerSignals; "
                "a core network calls its rule with (pre, post, weight, reward) — use a TaylorRule or MLPRule there"
            )
        total = self.coeffs[0] * self.terms[0](signals)
        for k in range(1, len(self.terms)):
            total = total + self.coeffs[k] * self.terms[k](signals)
        return self.learning_rate * total

    def penalty(self) -> Float[Array, ""]:
        """L1 norm of the coefficients."""
        return jnp.sum(jnp.abs(self.coeffs))

    # ---- inspection ----------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms)

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(t.alias for t in self.terms)

    @property
    def coefficients(self) -> dict[str, float]:
        """Coefficients by term equation (host floats)."""
        return {n: float(v) for n, v in zip(self.names, np.asarray(self.coeffs))}

    def coefficient(self, term: str | LocalTerm) -> Array:
        t = find_term(term, self.terms)
        return self.coeffs[self.terms.index(t)]

    def with_coeffs(self, coeffs) -> "LocalRule":
        """A copy with a new coefficient vector (same terms, rate and dtype)."""
        return LocalRule(self.terms, jnp.asarray(coeffs, dtype=self.coeffs.dtype), learning_rate=self.learning_rate)

    def astype(self, dtype) -> "LocalRule":
        if self.coeffs.dtype == dtype:
            return self
        return LocalRule(self.terms, self.coeffs.astype(dtype), learning_rate=self.learning_rate)

    def surviving(self, threshold: float = 0.02) -> tuple[str, ...]:
        """Names of the terms with |θ| > threshold."""
        return tuple(n for n, c in zip(self.names, np.asarray(self.coeffs)) if abs(c) > threshold)

    def pruned(self, threshold: float = 0.02) -> "LocalRule":
        """A copy keeping only the terms with |θ| > threshold (raises if none survive)."""
        keep = [i for i, c in enumerate(np.asarray(self.coeffs)) if abs(c) > threshold]
        if not keep:
            raise ModelError(f"no term has |θ| > {threshold}; largest is {float(np.max(np.abs(self.coeffs))):.3g}")
        return LocalRule(
            [self.terms[i] for i in keep], self.coeffs[np.asarray(keep)], learning_rate=self.learning_rate
        )

    def equation(self, *, threshold: float = 0.0, precision: int = 3) -> str:
        """``"ΔW = 0.05·(1.000·e_{l+1}·y_lᵀ − 0.020·W)"`` over the terms with |θ| > threshold."""
        return self.format_equation(
            zip(np.asarray(self.coeffs), self.names),
            lhs="ΔW", learning_rate=self.learning_rate, precision=precision, threshold=threshold,
        )  # fmt: skip
