"""Classical behavioural agents as "a rule + a policy", scored by :func:`compare` like every other hypothesis.

The two-odour :class:`ChoiceCircuit` with one-hot cues keeps one weight per option, so its weight
vector *is* the agent's table of option values Q, and the circuit already hands a rule the whole
vector (``weight``, shape ``(1, n_options)``) together with the chosen cue (``pre``, one-hot) and
the reward. A rule that reads another option's value (decay of the unchosen option only, a
long-term value γ·max Q) therefore needs no new interface: it is an :class:`AbstractRule` that
uses the whole vector. Such rules require one-hot cues; :func:`agent_model` checks that.

Rules (value updates) here:

- :class:`QAgentRule` — Q-learning / Rescorla–Wagner with optional forgetting of the chosen, the
  unchosen or all options (rate tied to α or its own κ), omission sensitivity θ, and a bootstrap
  term γ·V with V = max Q (long-term value) or V = Σ π_k Q_k, π = softmax(β_e·Q) (expected SARSA).
- :class:`OptionTaylorRule` — a Taylor rule over *option* signals: chosen indicator, the other
  option's value, the option's own value and reward (see :func:`option_taylor_rule`).

Policies (observation models): the two-way softmax is :class:`BernoulliChoice`; the accept–reject
policy of FlYMazeRL is :class:`AcceptReject`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._errors import ModelError
from .._fit import fit
from .._interrupt import finished
from .._model import PlasticityModel
from .._population import PopulationModel
from .._networks import ChoiceCircuit
from .._observation import AbstractObservationModel, BernoulliChoice
from .._rules import AbstractRule, TaylorRule, all_monomials
from .._trial_data import TrialData
from .._errors import ComparisonError
from ._hypotheses import AbstractHypothesis, FitSettings, FoldScore, ModelHypothesis, _check_trained_weights, _quiet_jitter, is_choice_data
from ._splits import Fold, trial_valid

_LOG3 = float(np.log(3.0))


def _logit(p: float) -> Array:
    if not 0.0 < p < 1.0:
        raise ModelError(f"rates must lie strictly between 0 and 1; got {p}")
    return jnp.asarray(np.log(p) - np.log1p(-p), dtype=float)


def _option_signals(pre, weight, reward, who: str):
    """(chosen indicator x, values Q, reward r) of one trial, from ChoiceCircuit's rule arguments."""
    if pre.ndim != 2 or pre.shape[0] != 1 or weight.shape[0] != 1:
        raise ModelError(
            f"{who} runs inside ChoiceCircuit (one output neuron, one trial at a time); got pre {pre.shape}, "
            f"weight {weight.shape}. Build the model with agent_model(rule, policy, data)."
        )
    return pre[0], weight[0], jnp.reshape(reward, (-1,))[0]


class QAgentRule(AbstractRule):
    """Q-learning agent update on a table of option values (the ChoiceCircuit's weights).

    On each trial, with chosen option c, reward r ∈ {0, 1} and values Q (before the trial):

        V       = max_k Q_k                      (long-term value, ``gamma``)
                  or Σ_k softmax(β_e·Q)_k · Q_k  (expected SARSA, ``gamma`` and ``expected_beta``)
        target  = r + θ·(1 − r) + γ·V            (θ: omission sensitivity; γ: bootstrap weight)
        Q_k    ← (1 − κ·f_k)·Q_k                 forgetting; f_k = 1 for the options that forget
        Q_c    ← Q_c + α·(target − Q_c)          the chosen option learns (after its forgetting)

    The options that forget are the unchosen ones (``forget_unchosen``), the chosen one
    (``forget_chosen``) or both. κ = α unless ``kappa`` is given (FlYMazeRL's "forgetting" agent ties
    them; its "differential forgetting" agent fits κ). Absent terms are absent parameters (θ = 0,
    γ = 0, κ unused), so the parameter count is the agent's. Without forgetting, omission or γ this
    is Rescorla–Wagner. Rates are stored as logits (α = sigmoid(alpha_logit)), θ as is.
    """

    alpha_logit: Float[Array, ""]
    kappa_logit: Float[Array, ""] | None
    omission: Float[Array, ""] | None
    gamma_logit: Float[Array, ""] | None
    expected_log_beta: Float[Array, ""] | None
    forget_chosen: bool = eqx.field(static=True)
    forget_unchosen: bool = eqx.field(static=True)

    def __init__(
        self,
        alpha: float = 0.2,
        *,
        forget_unchosen: bool = False,
        forget_chosen: bool = False,
        kappa: float | None = None,
        omission: float | None = None,
        gamma: float | None = None,
        expected_beta: float | None = None,
    ):
        if kappa is not None and not (forget_chosen or forget_unchosen):
            raise ModelError("QAgentRule: kappa (a forgetting rate) needs forget_unchosen=True and/or forget_chosen=True")
        if expected_beta is not None and gamma is None:
            raise ModelError("QAgentRule: expected_beta (expected SARSA) needs a bootstrap weight gamma")
        if expected_beta is not None and not expected_beta > 0:
            raise ModelError(f"QAgentRule: expected_beta must be positive; got {expected_beta}")
        self.alpha_logit = _logit(alpha)
        self.kappa_logit = None if kappa is None else _logit(kappa)
        self.omission = None if omission is None else jnp.asarray(float(omission))
        self.gamma_logit = None if gamma is None else _logit(gamma)
        self.expected_log_beta = None if expected_beta is None else jnp.log(jnp.asarray(float(expected_beta)))
        self.forget_chosen = bool(forget_chosen)
        self.forget_unchosen = bool(forget_unchosen)

    # natural parameters
    @property
    def alpha(self) -> Array:
        return jax.nn.sigmoid(self.alpha_logit)

    @property
    def kappa(self) -> Array:
        return self.alpha if self.kappa_logit is None else jax.nn.sigmoid(self.kappa_logit)

    def parameters(self) -> dict[str, float]:
        """The agent's parameters on their natural scale (only those it has)."""
        out = {"alpha": float(self.alpha)}
        if self.kappa_logit is not None:
            out["kappa"] = float(self.kappa)
        if self.omission is not None:
            out["theta"] = float(self.omission)
        if self.gamma_logit is not None:
            out["gamma"] = float(jax.nn.sigmoid(self.gamma_logit))
        if self.expected_log_beta is not None:
            out["beta_e"] = float(jnp.exp(self.expected_log_beta))
        return out

    def __call__(self, pre, post, weight, reward):
        x, q, r = _option_signals(pre, weight, reward, "QAgentRule")
        alpha = self.alpha
        target = r
        if self.omission is not None:
            target = target + self.omission * (1 - r)
        if self.gamma_logit is not None:
            if self.expected_log_beta is None:
                v = jnp.max(q)
            else:
                v = jnp.sum(jax.nn.softmax(jnp.exp(self.expected_log_beta) * q) * q)
            target = target + jax.nn.sigmoid(self.gamma_logit) * v
        forget = jnp.zeros_like(q)
        if self.forget_unchosen:
            forget = forget + (1 - x)
        if self.forget_chosen:
            forget = forget + x
        q1 = q * (1 - self.kappa * forget)
        q2 = q1 + x * alpha * (target - q1)
        return (q2 - q)[None, :]

    def equation(self, *, precision: int = 3, threshold: float = 0.0) -> str:
        """``"QAgentRule(alpha=0.2, kappa=0.1)"``: the agent's parameters on their natural scale (its update is
        written out in the class docs; it is not a sum of named terms)."""
        p = ", ".join(f"{k}={v:.{precision}g}" for k, v in self.parameters().items())
        return f"QAgentRule({p})"


class AcceptReject(AbstractObservationModel):
    """FlYMazeRL's accept–reject policy for two options.

    Each option k is accepted, when the fly considers it, with probability
    a_k = sigmoid(weight·Q_k + intercept). The two-option choice probability is

        P(choice = 1) = a₁·(3 − a₀) / (3·a₀ + 3·a₁ − 2·a₀·a₁)

    (FlYMazeRL, ``*_acceptreject`` agents). It is exactly the absorption probability of this process:
    the fly first considers either option with probability ½; it accepts the option under
    consideration with probability a_k; after a rejection it turns to the other option with
    probability ¾ or reconsiders the same one with probability ¼, until it accepts. (Equal a's give
    ½; a never-accepted option is never chosen.) The drives from :class:`ChoiceCircuit` are the Q's.

    Attributes:
        weight: slope of acceptance on value (fitted unless ``learn_weight=False``).
        intercept: acceptance bias (always fitted).
    """

    weight: Float[Array, ""]
    intercept: Float[Array, ""]
    learn_weight: bool = eqx.field(static=True)

    def __init__(self, weight: float = 1.0, intercept: float = 0.0, *, learn_weight: bool = True):
        self.weight = jnp.asarray(float(weight))
        self.intercept = jnp.asarray(float(intercept))
        self.learn_weight = learn_weight

    def held_fields(self) -> frozenset[str]:
        return frozenset() if self.learn_weight else frozenset({"weight"})

    def _z(self, drives):
        wt = self.weight if self.learn_weight else jax.lax.stop_gradient(self.weight)
        return wt * drives[..., 0] + self.intercept, wt * drives[..., 1] + self.intercept

    @staticmethod
    def _log_p1(z0, z1):
        # log a1 + log(3 − a0) − log(a0·(3 − 2·a1) + 3·a1), each piece in log space
        la0, la1 = jax.nn.log_sigmoid(z0), jax.nn.log_sigmoid(z1)
        a0, a1 = jax.nn.sigmoid(z0), jax.nn.sigmoid(z1)
        log_den = jnp.logaddexp(la0 + jnp.log(3 - 2 * a1), _LOG3 + la1)
        return la1 + jnp.log(3 - a0) - log_den

    def probability(self, drives: Array) -> Array:
        """P(choice = 1) for each trial."""
        z0, z1 = self._z(drives)
        return jnp.exp(self._log_p1(z0, z1))

    def log_prob(self, output, observation):
        z0, z1 = self._z(output)
        obs = observation.astype(z0.dtype)
        return obs * self._log_p1(z0, z1) + (1 - obs) * self._log_p1(z1, z0)

    def sample(self, key, output):
        return jax.random.bernoulli(key, self.probability(output)).astype(jnp.int32)


def softmax_policy(inverse_temperature: float = 3.0) -> BernoulliChoice:
    """The two-way softmax P(1) = sigmoid(β·(Q₁ − Q₀) + bias), β and bias fitted."""
    return BernoulliChoice(inverse_temperature, 0.0, learn_temperature=True)


def accept_reject_policy(weight: float = 3.0, intercept: float = 0.0) -> AcceptReject:
    """The accept–reject policy (:class:`AcceptReject`), weight and intercept fitted."""
    return AcceptReject(weight, intercept)


def check_one_hot_cues(data: TrialData, who: str = "agent") -> int:
    """Number of options; raises unless every trial's cues are the identity (one weight per option)."""
    if "cues" not in data.inputs:
        raise ComparisonError(f"{who}: needs choice data (inputs 'cues', 'choice', 'reward'); got inputs {sorted(data.inputs)}")
    cues = np.asarray(data.inputs["cues"])
    n_opt, n_in = cues.shape[-2:]
    if cues.ndim >= 4:
        # real trials only: padded trials (subjects with fewer trials) carry zero cues
        cues = cues[trial_valid(data)]
    if n_opt != n_in or not np.array_equal(cues, np.broadcast_to(np.eye(n_opt), cues.shape)):
        raise ComparisonError(
            f"{who}: the cue patterns are not one-hot (one feature per option; cues have shape {cues.shape[-2:]}). "
            "Agents keep one value per option in the choice circuit's weights; give one-hot cues "
            "(plasticinfer.one_hot_cues) or fit a Taylor rule on the cue features instead."
        )
    return int(n_opt)


def agent_model(
    rule: AbstractRule, policy: AbstractObservationModel, data: TrialData, *, n_trajectories: int | None = None
) -> PlasticityModel:
    """A rule + a policy as a :class:`PlasticityModel` on ``data``: ChoiceCircuit, one-hot cues, Q₀ = 0.

    ``n_trajectories`` (default: the data's) sets how many animals' initial values the model holds.

    Use the result in ``compare({name: model}, data, ...)``; it is fitted and scored with the same
    likelihood as every other hypothesis.
    """
    n = check_one_hot_cues(data, type(rule).__name__)
    if n != 2 and isinstance(policy, (AcceptReject, BernoulliChoice)):
        raise ComparisonError(f"the softmax and accept–reject policies here are for two options; the data have {n}")
    return PlasticityModel.create(
        rule, ChoiceCircuit(n), policy, n_trajectories=data.n_trajectories if n_trajectories is None else n_trajectories,
        initial_weights={"w": jnp.zeros((1, n))},
    )


#: Agent update rules by name (FlYMazeRL's abbreviations in brackets).
def classical_rules() -> dict[str, QAgentRule]:
    """The classical value updates: RW/Q, forgetting variants, omission sensitivity, long-term value, expected SARSA."""
    return {
        "Q (RW)": QAgentRule(0.2),
        "Q, forget unchosen (F)": QAgentRule(0.2, forget_unchosen=True),
        "Q, diff. forget unchosen (DF)": QAgentRule(0.2, forget_unchosen=True, kappa=0.1),
        "Q, forget all (κ)": QAgentRule(0.2, forget_unchosen=True, forget_chosen=True, kappa=0.05),
        "Q, forget chosen (κ)": QAgentRule(0.2, forget_chosen=True, kappa=0.05),
        "Q, omission (OS)": QAgentRule(0.2, omission=0.0),
        "Q, long-term (LT)": QAgentRule(0.2, gamma=0.3),
        "DF + OS": QAgentRule(0.2, forget_unchosen=True, kappa=0.1, omission=0.0),
        "DF + LT": QAgentRule(0.2, forget_unchosen=True, kappa=0.1, gamma=0.3),
        "DF + LT + OS": QAgentRule(0.2, forget_unchosen=True, kappa=0.1, gamma=0.3, omission=0.0),
        "expected SARSA": QAgentRule(0.2, gamma=0.3, expected_beta=3.0),
    }


def classical_agents(data: TrialData, *, policies=("accept-reject", "softmax"), rules=None) -> dict[str, PlasticityModel]:
    """Every classical rule with each policy, as models ready for :func:`compare` (names "rule · policy").

    ``rules``: a dict name → rule, or names of :func:`classical_rules` (case and spacing ignored;
    ``"all"`` for every one); default every one.
    """
    makers = {"accept-reject": accept_reject_policy, "softmax": softmax_policy}
    unknown = [p for p in policies if p not in makers]
    if unknown:
        raise ComparisonError(f"unknown policies {unknown}; choose from {sorted(makers)}")
    if rules is None:
        rules = classical_rules()
    elif not isinstance(rules, dict):
        rules = select_rules(rules)
    return {f"{name} · {p}": agent_model(rule, makers[p](), data) for p in policies for name, rule in rules.items()}


def select_rules(names) -> dict[str, QAgentRule]:
    """The :func:`classical_rules` named in ``names`` (case and spacing ignored; ``"all"``: every one)."""
    table = classical_rules()

    def norm(s: str) -> str:
        return "".join(str(s).lower().split())

    by_norm = {norm(k): k for k in table}
    if isinstance(names, str):
        names = [names]
    out = {}
    for name in names:
        if norm(name) == "all":
            out.update(table)
            continue
        if norm(name) not in by_norm:
            raise ComparisonError(f"unknown classical agent {name!r}; choose from {list(table)} or 'all'")
        k = by_norm[norm(name)]
        out[k] = table[k]
    return out


# --------------------------------------------------------------------------------------
# A Taylor rule over option signals
# --------------------------------------------------------------------------------------


class OptionTaylorRule(AbstractRule):
    """A Taylor rule whose variables are option signals instead of synapse signals.

    For option k the update is Δw_k = η·Σ_t θ_t · x_k^a · o_k^b · q_k^c · r^d with
    x_k = 1 if k was chosen, o_k = the other option's value (mean of the others for > 2 options),
    q_k = the option's own value, r = reward. The coefficients, names, fixed terms, L1 penalty and
    printing are those of the wrapped :class:`TaylorRule`, whose variables are read as
    x → chosen, y → other option's value, w → own value, r → reward (so ``"x*r"`` is reward
    learning of the chosen option, ``"w"`` decay of both, ``"y"`` pull towards the other value).
    """

    taylor: TaylorRule

    def __call__(self, pre, post, weight, reward):
        x, q, r = _option_signals(pre, weight, reward, "OptionTaylorRule")
        n = q.shape[0]
        other = (jnp.sum(q) - q) / max(n - 1, 1)
        t = self.taylor
        coeffs = t.coeffs
        if any(t.fixed):
            coeffs = jnp.where(jnp.asarray(t.fixed), jax.lax.stop_gradient(coeffs), coeffs)
        dw = jnp.zeros_like(q)
        for k, term in enumerate(t.terms):
            dw = dw + coeffs[k] * term.evaluate(x, other, q, r)
        return (t.learning_rate * dw)[None, :]

    def penalty(self):
        return self.taylor.penalty()

    def equation(self, *, precision: int = 3, threshold: float = 0.0) -> str:
        """The update as an equation in option signals: x = chosen, o = other value, q = own value, r = reward."""
        rhs = self.taylor.equation(precision=precision, threshold=threshold).split("=", 1)[1]
        return "ΔQ_k =" + rhs.translate(str.maketrans({"y": "o", "w": "q"}))


def option_taylor_rule(max_power: int = 2, *, init: dict[str, float] | None = None) -> OptionTaylorRule:
    """The option-signal Taylor family: x, r binary (power ≤ 1), own and other value up to ``max_power`` together.

    Terms that change every option by the same amount whatever the values ("1", "r") are left out:
    they cannot change a choice.
    """
    terms = [m for m in all_monomials(("x", "y", "w", "r"), max_power=max_power)
             if m.x <= 1 and m.r <= 1 and m.y + m.w <= max_power and m.name not in ("1", "r")]
    start = {"x*r": 0.5, "x*w": -0.2} if init is None else init
    rule = TaylorRule(terms)
    return OptionTaylorRule(rule.with_coefficients(start))  # an unknown term name is refused, not dropped


# --------------------------------------------------------------------------------------
# A rule found from data: L1 path, strength chosen on a validation part of the training animals
# --------------------------------------------------------------------------------------


@dataclass
class SparseRuleHypothesis(AbstractHypothesis):
    """A sparse rule found from the training animals and scored on the held-out part.

    1. The training animals are cut into a fitting and a validation part (:func:`validation_split`).
    2. The full rule (``rule``, e.g. :func:`option_taylor_rule`) is fitted on the fitting part at each
       L1 strength of ``l1_path`` (warm-started along the path); the strength with the best validation
       log-likelihood is chosen.
    3. Terms with |θ| ≤ ``prune_below`` at that strength are removed, and the remaining rule is refitted
       without penalty on all training animals and scored exactly as a :class:`ModelHypothesis`.

    The search is over one rule shared by the training animals (a population fit), whatever the
    comparison's ``per_subject`` setting.

    Attributes:
        name: label in tables.
        rule: an :class:`OptionTaylorRule` (the candidate terms and the starting coefficients).
        policy: the observation model (default: softmax with β fixed at 1 — the rule's scale is free).
        l1_path: L1 strengths tried (per-observation penalty units, as in :func:`fit`).
        prune_below: coefficients at or below this magnitude are dropped after selection.
        validation_fraction, seed: the validation cut of the training animals.
        population: if > 0, the selected rule is refitted as a :class:`PopulationModel` with this many
            Monte Carlo draws (its coefficients vary between animals; held-out animals are predicted by
            the marginal likelihood): the structure is chosen with shared fits, the spread is fitted last.
            Needs a split that holds out whole subjects.
        selection: filled by :meth:`score`: one dict per fold with the path's validation log-likelihoods,
            the chosen strength and the final equation.
    """

    name: str
    rule: OptionTaylorRule
    policy: AbstractObservationModel | None = None
    l1_path: tuple[float, ...] = (0.0, 1e-3, 3e-3, 1e-2)
    prune_below: float = 1e-2
    validation_fraction: float = 0.25
    seed: int = 0
    population: int = 0
    selection: list = field(default_factory=list, repr=False)

    def applies_to(self, data):
        return is_choice_data(data)

    def _policy(self):
        return self.policy if self.policy is not None else BernoulliChoice(1.0, 0.0, learn_temperature=False)

    def score(self, fold: Fold, settings: FitSettings) -> FoldScore:
        from ._gru import validation_split

        if not self.l1_path or min(self.l1_path) < 0:
            raise ComparisonError(f"{self.name}: l1_path must be a non-empty list of strengths ≥ 0; got {self.l1_path}")
        fit_part, val_part, _ = validation_split(fold, self.validation_fraction, self.seed)
        model = agent_model(self.rule, self._policy(), fit_part)
        val_ll, models = [], []
        for lam in self.l1_path:
            with _quiet_jitter():  # a traced strength: one compilation for the whole path
                model = finished(fit(model, fit_part, steps=settings.steps, l1=jnp.asarray(float(lam)), progress=False,
                                     fit_initial_weights=False)).model
            val_model = eqx.tree_at(lambda m: m.initial_weights, model, {"w": jnp.zeros((val_part.n_trajectories, 1, model.network.n_in))})
            with jax.numpy_dtype_promotion("standard"):
                val_ll.append(float(jnp.sum(val_model.log_likelihood(val_part))))
            models.append(model)
        if not np.isfinite(val_ll).any():
            raise ComparisonError(
                f"{self.name}: at every L1 strength {tuple(self.l1_path)} the fitted rule diverges on the validation animals "
                "(values blow up, typically through q² or o² terms); add larger strengths to l1_path or use "
                "option_taylor_rule(max_power=1)"
            )
        best = int(np.nanargmax(np.where(np.isfinite(val_ll), val_ll, -np.inf)))
        taylor = models[best].rule.taylor
        drop = [n for n, c in zip(taylor.names, np.asarray(taylor.coeffs)) if abs(c) <= self.prune_below]
        if len(drop) == len(taylor.names):  # keep the largest term: a rule with no terms is no learning at all
            drop.remove(taylor.names[int(np.argmax(np.abs(np.asarray(taylor.coeffs))))])
        pruned, shrink = self._finite_start(OptionTaylorRule(taylor.without(drop)), models[best].observation, fold.train)
        final_model = agent_model(pruned, models[best].observation, fold.train, n_trajectories=1)
        if self.population:
            pop_key = jax.random.key(self.seed)
            on_train = PopulationModel.from_model(agent_model(pruned, models[best].observation, fold.train), n_draws=self.population, key=pop_key)
            log_scale = on_train.with_finite_draws(fold.train).log_scale  # the fit must start where every draw is finite
            final_model = eqx.tree_at(lambda m: m.log_scale, PopulationModel.from_model(final_model, n_draws=self.population, key=pop_key), log_scale)
        final = ModelHypothesis(self.name, final_model)
        if settings.fit_initial_weights:  # what compare's pre-fit check does for a ModelHypothesis
            _check_trained_weights(self.name, fold, final._for_all(int(max(fold.train_subjects.max(), fold.test_subjects.max())) + 1))
        out = final.score(fold, dataclasses.replace(settings, l1=0.0, per_subject=False))
        fitted = getattr(out, "model", None)  # FoldScore carries the fitted model where compare keeps it
        shown = fitted.rule if isinstance(getattr(fitted, "rule", None), OptionTaylorRule) else pruned
        self.selection.append({
            "fold": fold.name, "l1_path": tuple(self.l1_path), "validation_ll": val_ll, "chosen_l1": self.l1_path[best],
            "terms": pruned.taylor.names, "equation": shown.equation(),
            "equation_from": "refit on all training animals" if shown is not pruned else "fit on the fitting part (before the refit)",
            "start_shrink": shrink,
        })
        return out

    def _finite_start(self, rule: OptionTaylorRule, policy, train: TrialData, max_halvings: int = 30):
        """The refit's start: ``rule``, or its coefficients halved until every training animal's likelihood is finite.

        The rule was chosen on the fitting part of the training animals; on all of them its values may
        blow up (q² and o² terms feed back on themselves), and a fit cannot start from a non-finite
        loss. Halving moves the start toward no learning (always finite) along the selected
        rule's own direction; the refit then optimises freely. Returns ``(rule, factor)``.
        """
        factor = 1.0
        for _ in range(max_halvings + 1):
            start = eqx.tree_at(lambda r: r.taylor.coeffs, rule, factor * rule.taylor.coeffs)
            model = agent_model(start, policy, train)
            with jax.numpy_dtype_promotion("standard"):
                ll = float(jnp.sum(model.log_likelihood(train)))
            if np.isfinite(ll):
                return start, factor
            factor /= 2
        raise ComparisonError(
            f"{self.name}: the selected rule {rule.equation()} diverges on the training animals even with its coefficients "
            f"scaled by 2^-{max_halvings}; use option_taylor_rule(max_power=1) or larger L1 strengths"
        )


__all__ = [
    "SparseRuleHypothesis",
    "QAgentRule",
    "AcceptReject",
    "OptionTaylorRule",
    "option_taylor_rule",
    "softmax_policy",
    "accept_reject_policy",
    "agent_model",
    "check_one_hot_cues",
    "classical_rules",
    "classical_agents",
]
