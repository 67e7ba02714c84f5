"""Plasticity rules: the function that maps local quantities to a weight change.

A rule is called as ``rule(pre, post, weight, reward)`` on whole matrices at once:

- ``pre``: presynaptic activity, shape ``(batch, n_pre)``;
- ``post``: postsynaptic activity, shape ``(batch, n_post)``;
- ``weight``: the weight matrix, shape ``(n_post, n_pre)``;
- ``reward``: reward signal per sample, shape ``(batch,)``;

and returns ``Δw`` of shape ``(n_post, n_pre)``, averaged over the batch (the
"batch-mean update"). Any Equinox module with that signature can serve as a rule.
"""

from __future__ import annotations

import abc
import copy
import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._errors import ModelError
from ._taylor_contraction import Contraction, Derivative, taylor_update

VARIABLES: tuple[str, ...] = ("x", "y", "w", "r")
_VAR_DESCRIPTION = {"x": "presynaptic activity", "y": "postsynaptic activity", "w": "weight", "r": "reward"}
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_FROM_SUPERSCRIPT = {v: k for k, v in zip("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")}


def format_equation(
    terms: Iterable[tuple[float, str]],
    *,
    lhs: str = "Δw",
    learning_rate: float = 1.0,
    precision: int = 3,
    threshold: float = 0.0,
) -> str:
    """The one equation formatter for every rule: ``"Δw = η·(1.000·x·y − 0.500·w)"``.

    Args:
        terms: ``(coefficient, term)`` pairs in print order; the term ``""`` (or ``"1"``) is the constant,
            a term containing a space is put in parentheses.
        lhs: the left-hand side (``"Δw"``, ``"ΔW"``, ``"pre spike: Δw"``).
        learning_rate: η, written in front of the sum unless it is 1.
        precision: decimals of each coefficient.
        threshold: terms with |θ| ≤ threshold are left out (exact zeros always are).
    """
    parts = []
    for c, term in terms:
        c = float(c)
        if abs(c) <= threshold or c == 0.0:
            continue
        body = "" if term in ("", "1") else "·" + (f"({term})" if " " in term else term)
        parts.append(("−" if c < 0 else "+", f"{abs(c):.{precision}f}{body}"))
    if not parts:
        rhs = "0"
    else:
        rhs = ("−" if parts[0][0] == "−" else "") + parts[0][1] + "".join(f" {s} {p}" for s, p in parts[1:])
    if learning_rate == 1.0:
        return f"{lhs} = {rhs}"
    return f"{lhs} = {learning_rate:g}·({rhs})"


class AbstractRule(eqx.Module):
    """A plasticity rule acting on a whole weight matrix. The network decides the call: core networks pass
    (pre, post, weight, reward); a network with richer local signals may pass one record of them instead
    (``metalearn.FeedbackNetwork`` calls ``metalearn.LocalRule`` with a ``LayerSignals``)."""

    @abc.abstractmethod
    def __call__(
        self,
        pre: Float[Array, "batch pre"],
        post: Float[Array, "batch post"],
        weight: Float[Array, "post pre"],
        reward: Float[Array, " batch"],
    ) -> Float[Array, "post pre"]:
        """Return the weight change Δw (batch mean)."""

    def penalty(self) -> Float[Array, ""]:
        """L1 norm of the sparsity-penalised parameters (zero for rules without such)."""
        return jnp.zeros(())

    format_equation = staticmethod(format_equation)

    def equation(self, *, precision: int = 3, threshold: float = 0.0) -> str:
        """The rule written out (``"Δw = 0.500·x·r − 0.100·w"``). Rules with named terms print them with
        :meth:`format_equation` (the one formatter every rule uses); others say what they compute."""
        return f"Δw = {type(self).__name__}(x, y, w, r)"

    def __str__(self) -> str:
        return self.equation()


# --------------------------------------------------------------------------------------
# Monomials
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Monomial:
    """The monomial x^a · y^b · w^c · r^d, named like ``"x*y^2*w"`` (``"1"`` for the constant)."""

    x: int = 0
    y: int = 0
    w: int = 0
    r: int = 0

    def __post_init__(self):
        for v in VARIABLES:
            p = getattr(self, v)
            if not isinstance(p, (int, np.integer)) or p < 0:
                raise ModelError(f"power of {v} must be a non-negative integer, got {p!r}")

    @property
    def powers(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.r)

    @property
    def degree(self) -> int:
        return sum(self.powers)

    @property
    def name(self) -> str:
        parts = [v if p == 1 else f"{v}^{p}" for v, p in zip(VARIABLES, self.powers) if p > 0]
        return "*".join(parts) if parts else "1"

    def pretty(self) -> str:
        parts = [v if p == 1 else f"{v}{str(p).translate(_SUPERSCRIPT)}" for v, p in zip(VARIABLES, self.powers) if p > 0]
        return "·".join(parts) if parts else "1"

    def __str__(self) -> str:
        return self.name

    def evaluate(self, x, y, w, r):
        """Reference value x^a y^b w^c r^d by plain multiplication (for tests and docs)."""
        out = 1.0
        for val, p in zip((x, y, w, r), self.powers):
            for _ in range(p):
                out = out * val
        return out

    @classmethod
    def parse(cls, text: str) -> "Monomial":
        """Parse ``"x*y^2"``, ``"x·y²"``, ``"x y**2"`` or ``"1"`` into a monomial."""
        s = text.strip()
        s = "".join(f"^{_FROM_SUPERSCRIPT[c]}" if c in _FROM_SUPERSCRIPT else c for c in s)
        s = re.sub(r"\s*(\*\*|\^)\s*", "^", s)
        if s in ("1", ""):
            if s == "":
                raise ModelError("empty term name; use '1' for the constant term")
            return cls()
        if re.match(r"^[\*·]|.*[\*·]$", s):
            raise ModelError(
                f"cannot parse term {text!r}: a product sign with no factor on one side (write terms like 'x*y', "
                "'y^2*w')"
            )
        powers = dict.fromkeys(VARIABLES, 0)
        for factor in re.split(r"[\*·\s]+", s):
            if not factor:
                continue
            m = re.fullmatch(r"([xywr])(?:\^(\d+))?", factor)
            if m is None:
                raise ModelError(
                    f"cannot parse term {text!r}: factor {factor!r} is not one of x, y, w, r with an optional "
                    "power (write terms like 'x*y', 'y^2*w', 'x*r'; x=pre, y=post, w=weight, r=reward)"
                )
            powers[m.group(1)] += int(m.group(2) or 1)
        return cls(**powers)


_NUMBER = r"(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)"


def signed_terms(text: str, equation: str | None = None) -> list[tuple[float, str | None, str]]:
    """``(sign, number or None, term)`` for each signed term of an equation's right-hand side (``0.5·x·r − w``).

    The one reader of rule equations (``TaylorRule.from_equation``, ``compare.parse_hypothesis``): a sign
    with no term after it (``"x*y +"``) or a product sign with nothing before it (``"*x"``) is refused
    rather than read as the constant term. ``equation`` is the text to name in errors.
    """
    where = text if equation is None else equation
    tokens = [t.strip() for t in re.split(r"(?<!\d[eE])(?=[+-])", text.strip()) if t.strip()]
    if not tokens:
        raise ModelError(f"empty rule equation {where!r}; write terms such as 'x*y - y^2*w'")
    out = []
    for tok in tokens:
        m = re.fullmatch(rf"([+-]?)\s*({_NUMBER})?\s*([\*·]?)\s*(.*)", tok, re.S)
        sign, number, times, body = m.group(1), m.group(2), m.group(3), m.group(4).strip()
        if number is None and times:
            raise ModelError(f"cannot parse rule equation {where!r}: {tok!r} has a product sign with nothing before it")
        if number is None and not body:
            raise ModelError(
                f"cannot parse rule equation {where!r}: a sign {tok!r} with no term after it (write terms like "
                "'x*y - y^2*w'; '1' is the constant term)"
            )
        out.append((-1.0 if sign == "-" else 1.0, number, body))
    return out


def _as_monomial(term: "Monomial | str") -> Monomial:
    return term if isinstance(term, Monomial) else Monomial.parse(term)


def all_monomials(
    variables: Sequence[str] = ("x", "y", "w"), max_power: int = 2, max_degree: int | None = None
) -> tuple[Monomial, ...]:
    """Every monomial in ``variables`` with each power ≤ ``max_power`` and total degree ≤ ``max_degree``.

    Ordered by total degree, then lexicographically by (x, y, w, r) powers.
    """
    variables = tuple(variables)
    unknown = set(variables) - set(VARIABLES)
    if unknown:
        raise ModelError(f"unknown variables {sorted(unknown)}; choose from {VARIABLES} ({_VAR_DESCRIPTION})")
    out = []
    for powers in itertools.product(range(max_power + 1), repeat=len(variables)):
        kw = dict(zip(variables, powers))
        m = Monomial(**kw)
        if max_degree is None or m.degree <= max_degree:
            out.append(m)
    return tuple(sorted(out, key=lambda m: (m.degree, tuple(-p for p in m.powers))))


# --------------------------------------------------------------------------------------
# Taylor rule
# --------------------------------------------------------------------------------------


class TaylorRule(AbstractRule):
    """Δw = η · Σ_k θ_k · x^a_k · y^b_k · w^c_k · r^d_k over a set of named monomials.

    Build one with :meth:`full` (every monomial up to a truncation), :meth:`from_terms`
    (a dict of named terms) or :meth:`from_equation` (``"x*y - y^2*w"``).

    Attributes:
        coeffs: one coefficient θ_k per term.
        terms: the monomials, in the order of ``coeffs``.
        fixed: per term, whether the coefficient is held fixed (no gradient flows to it).
        learning_rate: the overall rate η (not fitted).
        contraction: how Δw is summed: ``"auto"`` (default) picks from the shapes of each call
            between ``"synapse"`` (per-synapse polynomial; large layers, few samples per trial)
            and ``"moments"`` (batch moments first; many samples into a small layer). Both give
            the same Δw; forcing one is for tests and benchmarks.
        derivative: the per-synapse path's hand-written derivative. ``"reverse"``: a VJP, the
            fastest gradients on all but the smallest layers (7.6× faster than the JVP at
            1000 × 100, 1.6× at 20 × 200 vmapped); forward over reverse (``jax.hessian``) and
            reverse over reverse work through it, but plain forward mode does not — ``jax.jvp``
            and ``jax.jacfwd`` raise "can't apply forward-mode autodiff (jvp) to a custom_vjp
            function". ``"forward"``: a JVP that supports every JAX transformation (faster on
            small layers: 1.4× at 2 × 10). ``"auto"`` (default): the VJP from 2,000 synapses on,
            else the JVP. Switch a whole model to ``"forward"`` with
            :func:`plasticinfer.forward_mode` before ``jax.jvp``/``jax.jacfwd``; the library does so itself
            where it needs them (Laplace intervals, identifiability). ``"fused"``: :func:`simulate` runs the
            whole trajectory of a ``FeedForward`` layer (identity activation, one sample per trial, powers
            up to 2, CPU) in compiled kernels (numba, an optional dependency) with a hand-written
            backward: at 1000 × 100 over 2,000 trials the gradient is about 5× faster than the default and
            about 4× the (2.6× faster) forward (``benchmarks/bench_fused_kernel.py``, docs/core.md); first-order
            reverse mode only, no gradient for the inputs; anything else it cannot run is refused by name.
    """

    coeffs: Float[Array, " terms"]
    terms: tuple[Monomial, ...] = eqx.field(static=True)
    fixed: tuple[bool, ...] = eqx.field(static=True)
    learning_rate: float = eqx.field(static=True)
    contraction: Contraction = eqx.field(static=True, default="auto")
    derivative: Derivative = eqx.field(static=True, default="auto")

    def __init__(
        self,
        terms: Sequence[Monomial | str],
        coeffs: Float[Array, " terms"] | Sequence[float] | None = None,
        *,
        fixed: Iterable[Monomial | str] = (),
        learning_rate: float = 1.0,
        contraction: Contraction = "auto",
        derivative: Derivative = "auto",
    ):
        if contraction not in ("auto", "synapse", "moments"):
            raise ModelError(f"TaylorRule contraction must be 'auto', 'synapse' or 'moments'; got {contraction!r}")
        if derivative not in ("auto", "reverse", "forward", "fused"):
            raise ModelError(f"TaylorRule derivative must be 'auto', 'reverse', 'forward' or 'fused'; got {derivative!r}")
        terms = tuple(_as_monomial(t) for t in terms)
        if len(set(terms)) != len(terms):
            dup = sorted({t.name for t in terms if terms.count(t) > 1})
            raise ModelError(f"TaylorRule terms must be distinct; repeated: {dup}")
        if len(terms) == 0:
            raise ModelError("TaylorRule needs at least one term")
        if coeffs is None:
            coeffs = jnp.zeros(len(terms))
        coeffs = jnp.asarray(coeffs)
        if not jnp.issubdtype(coeffs.dtype, jnp.floating):
            coeffs = coeffs.astype(float)
        if coeffs.shape != (len(terms),):
            raise ModelError(f"TaylorRule got {len(terms)} terms but coeffs of shape {coeffs.shape}")
        fixed_set = {_as_monomial(t) for t in fixed}
        missing = fixed_set - set(terms)
        if missing:
            raise ModelError(f"cannot fix terms that are not in the rule: {sorted(m.name for m in missing)}")
        self.terms = terms
        self.coeffs = coeffs
        self.fixed = tuple(t in fixed_set for t in terms)
        self.learning_rate = float(learning_rate)
        if not np.isfinite(self.learning_rate):
            raise ModelError(f"TaylorRule learning_rate must be a finite number; got {learning_rate!r}")
        self.contraction = contraction
        self.derivative = derivative

    # ---- constructors --------------------------------------------------------------

    @classmethod
    def full(
        cls,
        variables: Sequence[str] = ("x", "y", "w"),
        max_power: int = 2,
        max_degree: int | None = None,
        *,
        init: float | Mapping[str, float] = 0.0,
        exclude: Iterable[Monomial | str] = (),
        learning_rate: float = 1.0,
    ) -> "TaylorRule":
        """Every monomial of ``variables`` up to ``max_power`` per variable (and ``max_degree`` in total).

        ``variables=("x","y","w","r"), max_power=2`` gives the 81-term rule. ``exclude``
        masks terms out (e.g. ``exclude=["1"]`` drops the constant).
        """
        excl = {_as_monomial(t) for t in exclude}
        terms = tuple(m for m in all_monomials(variables, max_power, max_degree) if m not in excl)
        if isinstance(init, Mapping):
            values = {_as_monomial(k): float(v) for k, v in init.items()}
            unknown = set(values) - set(terms)
            if unknown:
                raise ModelError(f"init names terms not in the rule: {sorted(m.name for m in unknown)}")
            coeffs = [values.get(t, 0.0) for t in terms]
        else:
            coeffs = [float(init)] * len(terms)
        return cls(terms, jnp.asarray(coeffs), learning_rate=learning_rate)

    @classmethod
    def from_terms(
        cls, coefficients: Mapping[str | Monomial, float], *, fixed: Iterable[str | Monomial] = (), learning_rate: float = 1.0
    ) -> "TaylorRule":
        """A rule with exactly the given named terms, e.g. ``{"x*y": 1.0, "y^2*w": -1.0}``."""
        terms = [_as_monomial(k) for k in coefficients]
        for term, value in coefficients.items():
            if isinstance(value, jax.core.Tracer):  # traceable: a traced value is not checked
                continue
            try:
                finite = not isinstance(value, (str, bool)) and np.shape(value) == () and np.isfinite(float(value))
            except (TypeError, ValueError):
                finite = False
            if not finite:
                raise ModelError(f"the coefficient of {str(term)!r} must be a finite number; got {value!r}")
        coeffs = jnp.stack([jnp.asarray(v, dtype=float) for v in coefficients.values()])  # traceable
        return cls(terms, coeffs, fixed=fixed, learning_rate=learning_rate)

    @classmethod
    def from_equation(cls, equation: str, *, learning_rate: float = 1.0) -> "TaylorRule":
        """Parse ``"x*y - y^2*w"``, ``"Δw = 0.5·x·r − 0.05·w"``, ``"0.5 x y"`` (signs are kept).

        What :meth:`equation` prints reads back: ``"Δw = 0.05·(1.000·x·y − 1.000·y²·w)"`` is η = 0.05
        (times ``learning_rate``) and the coefficients in the brackets.
        """
        s = equation.replace("−", "-").replace("Δw", "").replace("dw", "")
        s = s.split("=", 1)[-1].strip()
        if not s:
            raise ModelError(f"empty rule equation {equation!r}")
        given_rate = learning_rate
        scaled = re.fullmatch(rf"([+-]?{_NUMBER})\s*[·*]\s*\(([^()]*)\)", s, re.S)  # η·(…), as equation() writes it
        if scaled is not None:
            learning_rate = float(scaled.group(1)) * float(learning_rate)
            s = scaled.group(2).strip()
        # spaces between factors are products ("0.5 x y"), spaces around signs are not
        s = re.sub(r"\s*([+\-*·^/])\s*", r"\1", s)
        s = re.sub(r"\s+", "*", s.strip())
        coefficients: dict[Monomial, float] = {}
        for sign, number, body in signed_terms(s, equation):
            value = float(number) if number else 1.0
            mono = Monomial.parse(body or "1")
            if not np.isfinite(value):  # "1e400" reads as inf
                raise ModelError(f"the coefficient of {mono.name!r} in the rule {equation!r} must be a finite number; got {number}")
            coefficients[mono] = coefficients.get(mono, 0.0) + sign * value
        for mono, value in coefficients.items():
            if not np.isfinite(value):  # finite numbers that overflow when a term's are added up
                raise ModelError(f"the coefficients of {mono.name!r} in the rule {equation!r} add up to {value}; give finite numbers")
        if not np.isfinite(learning_rate):
            given = f"its scale {scaled.group(1)} times learning_rate={given_rate!r}" if scaled is not None else f"learning_rate={given_rate!r}"
            raise ModelError(f"the rule {equation!r}: the learning rate η must be a finite number; {given} is {learning_rate}")
        return cls(list(coefficients), jnp.asarray(list(coefficients.values())), learning_rate=learning_rate)

    # ---- inspection ----------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms)

    @property
    def coefficients(self) -> dict[str, float]:
        """Coefficients by term name (host floats)."""
        values = np.asarray(self.coeffs)
        return {n: float(v) for n, v in zip(self.names, values)}

    def coefficient(self, term: str | Monomial) -> Array:
        mono = _as_monomial(term)
        if mono not in self.terms:
            raise ModelError(f"term {mono.name!r} is not in the rule; its terms are {list(self.names)}")
        return self.coeffs[self.terms.index(mono)]

    def with_coefficients(self, values: Mapping[str | Monomial, float]) -> "TaylorRule":
        """A copy with some coefficients replaced by name (terms must exist)."""
        new = self.coeffs
        for k, v in values.items():
            mono = _as_monomial(k)
            if mono not in self.terms:
                raise ModelError(f"term {mono.name!r} is not in the rule; its terms are {list(self.names)}")
            new = new.at[self.terms.index(mono)].set(v)
        return eqx.tree_at(lambda r: r.coeffs, self, new)

    def with_fixed(self, terms: Iterable[str | Monomial]) -> "TaylorRule":
        """A copy in which the named terms are held fixed at their current values."""
        return TaylorRule(self.terms, self.coeffs, fixed=[t for t, f in zip(self.terms, self.fixed) if f] + list(terms), learning_rate=self.learning_rate, contraction=self.contraction, derivative=self.derivative)

    def with_derivative(self, derivative: Derivative) -> "TaylorRule":
        """A copy whose hand-written derivative is ``"auto"``, ``"reverse"`` (VJP), ``"forward"`` (JVP) or ``"fused"``; see the class docs.

        Only the static choice changes, so this works on traced rules and on the partitioned
        halves of ``eqx.partition`` too.
        """
        if derivative not in ("auto", "reverse", "forward", "fused"):
            raise ModelError(f"TaylorRule derivative must be 'auto', 'reverse', 'forward' or 'fused'; got {derivative!r}")
        new = copy.copy(self)
        object.__setattr__(new, "derivative", derivative)
        return new

    def without(self, terms: Iterable[str | Monomial]) -> "TaylorRule":
        """A copy with the named terms masked out (removed)."""
        drop = {_as_monomial(t) for t in terms}
        keep = [i for i, t in enumerate(self.terms) if t not in drop]
        return TaylorRule(
            [self.terms[i] for i in keep],
            self.coeffs[np.asarray(keep, dtype=int)],
            fixed=[self.terms[i] for i in keep if self.fixed[i]],
            learning_rate=self.learning_rate,
            contraction=self.contraction,
            derivative=self.derivative,
        )

    def equation(self, *, precision: int = 3, threshold: float = 0.0) -> str:
        """``"Δw = 1.000·x·y − 1.000·y²·w"`` over the terms whose |θ| > threshold."""
        return format_equation(
            zip(np.asarray(self.coeffs), (t.pretty() for t in self.terms)),
            learning_rate=self.learning_rate, precision=precision, threshold=threshold,
        )  # fmt: skip

    def warnings_for(self, *, binary_reward: bool = False) -> list[str]:
        """Identifiability warnings, e.g. terms differing only in the power of r when r is binary."""
        msgs = []
        if binary_reward:
            groups: dict[tuple, list[str]] = {}
            for t in self.terms:
                if t.r > 0:
                    groups.setdefault((t.x, t.y, t.w), []).append(t.name)
            for names in groups.values():
                if len(names) > 1:
                    msgs.append(
                        f"terms {names} differ only in the power of r; with binary rewards r^k = r, so the data "
                        "cannot tell them apart. Keep one (use rule.without([...]))."
                    )
        return msgs

    # ---- evaluation ----------------------------------------------------------------

    def _dense(self) -> Array:
        """The coefficient tensor θ[a, b, c, d] (powers of x, y, w, r)."""
        coeffs = self.coeffs
        if any(self.fixed):
            fixed = jnp.asarray(self.fixed)
            coeffs = jnp.where(fixed, jax.lax.stop_gradient(coeffs), coeffs)
        shape = tuple(max(t.powers[i] for t in self.terms) + 1 for i in range(4))
        # a product with a constant 0/1 matrix, not a scatter: inside a scan over trials a scatter
        # (and its transposed gather) costs more than the whole rest of a small update
        flat = np.ravel_multi_index(tuple(np.asarray([t.powers[i] for t in self.terms]) for i in range(4)), shape)
        place = np.zeros((len(self.terms), int(np.prod(shape))), dtype=coeffs.dtype)
        place[np.arange(len(self.terms)), flat] = 1
        return (coeffs @ place).reshape(shape)

    def __call__(self, pre, post, weight, reward):
        pre, post, reward = _batched(pre, post, reward)
        return taylor_update(
            self._dense(), pre, post, weight, reward, self.contraction, scale=self.learning_rate,
            derivative="auto" if self.derivative == "fused" else self.derivative,  # "fused" acts in simulate, on whole runs
        )

    def penalty(self):
        free = jnp.asarray(~np.asarray(self.fixed), dtype=self.coeffs.dtype)
        return jnp.sum(jnp.abs(self.coeffs) * free)


#: how equations print the reward when the network passes the reward-prediction error r − E[r]
RPE = "(r−E[r])"


def rule_equation(rule: AbstractRule, *, reward_expectation: bool = False, precision: int = 3) -> str:
    """``rule``'s equation, printing ``(r−E[r])`` for r when the network passes the prediction error.

    The one formatter used by fit results, comparisons and the fly report: a rule fitted in a
    ``ChoiceCircuit(reward_expectation=True)`` sees r − E[r] where its terms say r.
    """
    text = rule.equation(precision=precision) if isinstance(rule, AbstractRule) else str(rule)
    if not reward_expectation:
        return text
    return re.sub(r"(?<![A-Za-z\[])r(?![A-Za-z\]])", RPE, text)


def forward_mode(tree):
    """A copy of ``tree`` (a rule, a model, any pytree) with every :class:`TaylorRule` switched to ``derivative="forward"``.

    Needed before ``jax.jvp`` or ``jax.jacfwd`` through a Taylor rule, e.g.
    ``jax.jacfwd(lambda m: loss(m))(forward_mode(model))`` (``jax.hessian``, forward over reverse,
    works either way).
    """
    is_rule = lambda x: isinstance(x, TaylorRule)  # noqa: E731
    return jax.tree_util.tree_map(lambda x: x.with_derivative("forward") if is_rule(x) else x, tree, is_leaf=is_rule)


def _batched(pre, post, reward):
    pre = jnp.atleast_2d(pre)
    post = jnp.atleast_2d(post)
    if pre.shape[0] != post.shape[0]:
        raise ModelError(f"pre has batch {pre.shape[0]} but post has batch {post.shape[0]}")
    reward = jnp.broadcast_to(jnp.asarray(reward, dtype=pre.dtype), (pre.shape[0],))
    return pre, post, reward


# --------------------------------------------------------------------------------------
# MLP rule
# --------------------------------------------------------------------------------------


def identity(x):
    """No activation: the default of linear layers and the MLP rule's output."""
    return x


class MLPRule(AbstractRule):
    """Δw_ij = η · MLP(x_j, y_i, w_ij, r) per synapse (batch mean), over chosen variables."""

    mlp: eqx.nn.MLP
    variables: tuple[str, ...] = eqx.field(static=True)
    learning_rate: float = eqx.field(static=True)

    def __init__(
        self,
        variables: Sequence[str] = ("x", "y", "w", "r"),
        width: int = 16,
        depth: int = 2,
        *,
        key: PRNGKeyArray,
        activation: Callable = jax.nn.tanh,
        learning_rate: float = 1.0,
        final_scale: float = 0.01,
    ):
        variables = tuple(variables)
        if not variables or set(variables) - set(VARIABLES):
            raise ModelError(f"MLPRule variables must be a non-empty subset of {VARIABLES}; got {variables}")
        # a named identity for the output (Equinox's default is a lambda, which a results file cannot name)
        mlp = eqx.nn.MLP(len(variables), "scalar", width, depth, activation=activation, final_activation=identity, key=key)
        last = mlp.layers[-1]
        mlp = eqx.tree_at(lambda m: m.layers[-1].weight, mlp, last.weight * final_scale)
        self.mlp = mlp
        self.variables = variables
        self.learning_rate = float(learning_rate)

    def __call__(self, pre, post, weight, reward):
        pre, post, reward = _batched(pre, post, reward)
        n_batch = pre.shape[0]
        shape = (n_batch,) + weight.shape
        feats = {
            "x": jnp.broadcast_to(pre[:, None, :], shape),
            "y": jnp.broadcast_to(post[:, :, None], shape),
            "w": jnp.broadcast_to(weight[None], shape),
            "r": jnp.broadcast_to(reward[:, None, None], shape),
        }
        z = jnp.stack([feats[v] for v in self.variables], axis=-1).reshape(-1, len(self.variables))
        out = jax.vmap(self.mlp)(z).reshape(shape)
        return self.learning_rate * out.mean(0)

    def equation(self, *, precision: int = 3, threshold: float = 0.0) -> str:
        """``"Δw = MLP(x, y, w, r)"`` (width × depth in brackets); an MLP has no named terms to print."""
        mlp = self.mlp
        lr = "" if self.learning_rate == 1.0 else f"{self.learning_rate:g}·"
        return f"Δw = {lr}MLP({', '.join(self.variables)})  [{mlp.width_size} wide, {mlp.depth} hidden layers]"


class CovarianceRule(AbstractRule):
    """Δw = η · mean_batch (x − x̄)(y − ȳ), with x̄, ȳ the batch means (needs batch > 1)."""

    coeff: Float[Array, ""]
    learning_rate: float = eqx.field(static=True)

    def __init__(self, coeff: float = 1.0, *, learning_rate: float = 1.0):
        self.coeff = jnp.asarray(coeff, dtype=float)
        self.learning_rate = float(learning_rate)

    def __call__(self, pre, post, weight, reward):
        pre, post, _ = _batched(pre, post, reward)
        if pre.shape[0] == 1:
            # centred on one sample, (x − x̄)(y − ȳ) is 0 on every trial: the weights would never move
            raise ModelError(
                "CovarianceRule centres x and y on their means over the samples of a trial, so it needs several "
                "samples per trial (FeedForward with inputs of shape (trajectory, trial, sample, n_in)); with one "
                "sample it is 0 and the weights never change. For one sample per trial use "
                "pi.covariance(x_mean, y_mean), the covariance rule around fixed means."
            )
        xc = pre - pre.mean(0)
        yc = post - post.mean(0)
        return self.learning_rate * self.coeff * (yc.T @ xc) / pre.shape[0]

    def equation(self, *, precision: int = 3, threshold: float = 0.0) -> str:
        """``"Δw = 1.000·(x−x̄)·(y−ȳ)"`` (x̄, ȳ: batch means)."""
        return format_equation(
            [(self.coeff, "(x−x̄)·(y−ȳ)")], learning_rate=self.learning_rate, precision=precision, threshold=threshold
        )


# --------------------------------------------------------------------------------------
# Classic rules (all Taylor rules with named terms, so they can be compared and fitted)
# --------------------------------------------------------------------------------------


def hebbian(rate: float = 1.0) -> TaylorRule:
    """Plain Hebb: Δw = θ·x·y."""
    return TaylorRule.from_terms({"x*y": rate})


def oja(rate: float = 1.0) -> TaylorRule:
    """Oja's rule: Δw = θ·(x·y − y²·w); finds the first principal component."""
    return TaylorRule.from_terms({"x*y": rate, "y^2*w": -rate})


def covariance(x_mean: float, y_mean: float, rate: float = 1.0) -> TaylorRule:
    """Covariance rule with fixed means: (x − x̄)(y − ȳ) = x·y − ȳ·x − x̄·y + x̄ȳ."""
    return TaylorRule.from_terms({"x*y": rate, "x": -rate * y_mean, "y": -rate * x_mean, "1": rate * x_mean * y_mean})


def bcm(threshold: float, rate: float = 1.0) -> TaylorRule:
    """BCM-like rule with a fixed threshold: Δw = θ·x·y·(y − θ_M)."""
    return TaylorRule.from_terms({"x*y^2": rate, "x*y": -rate * threshold})


def reward_modulated_hebbian(rate: float = 1.0, baseline: float | None = None) -> TaylorRule:
    """Δw = θ·x·r, or θ·x·(r − r̄) with a fixed baseline r̄.

    For a *running* expected reward E[r], use this rule with a network that passes
    r − E[r] as the reward (e.g. ``ChoiceCircuit(reward_expectation=True)``).
    """
    if baseline is None:
        return TaylorRule.from_terms({"x*r": rate})
    return TaylorRule.from_terms({"x*r": rate, "x": -rate * baseline})


def weight_decay(rate: float) -> TaylorRule:
    """Δw = −rate·w (pass a positive rate)."""
    return TaylorRule.from_terms({"w": -rate})


def rescorla_wagner(alpha: float, forgetting: float = 0.0) -> TaylorRule:
    """Rescorla–Wagner as a Taylor rule on the chosen option's value: Δw = α·x·r − α·x·w − forgetting·w.

    With one-hot inputs, x·w is the chosen option's value, so α·x·(r − w) is the
    classic prediction-error update and the pure-w term forgets every option.
    """
    terms = {"x*r": alpha, "x*w": -alpha}
    if forgetting:
        terms["w"] = -forgetting
    return TaylorRule.from_terms(terms)
