"""`PlasticityModel`: a rule inside a network, an observation model, and initial weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._errors import ModelError, PlasticInferError
from ._networks import AbstractNetwork
from ._observation import AbstractObservationModel
from ._rules import AbstractRule, TaylorRule
from ._simulate import Trajectory, simulate
from ._trial_data import TrialData


class PlasticityModel(eqx.Module):
    """The differentiable model a fit works on.

    Attributes:
        rule: the plasticity rule (or a dict of rules keyed by weight name).
        network: the network.
        observation: the observation model.
        initial_weights: dict of initial weight matrices with a leading ``trajectory`` axis
            (one set of initial weights per learning trajectory). A fit learns them unless
            told not to (``fit(..., fit_initial_weights=False)``).
    """

    rule: Any
    network: AbstractNetwork
    observation: AbstractObservationModel
    initial_weights: dict[str, Array]

    def __check_init__(self):
        shapes = self.network.weight_shapes()
        if set(self.initial_weights) != set(shapes):
            raise ModelError(
                f"initial_weights has names {sorted(self.initial_weights)}; the network needs {sorted(shapes)}"
            )
        n = None
        for name, shape in shapes.items():
            w = self.initial_weights[name]
            if tuple(w.shape[1:]) != tuple(shape):
                raise ModelError(
                    f"initial_weights[{name!r}] has shape {tuple(w.shape)}; expected (trajectory,) + {tuple(shape)}. "
                    "Use PlasticityModel.create(...) to broadcast one set of weights to every trajectory."
                )
            if n is None:
                n = w.shape[0]
            elif w.shape[0] != n:
                raise ModelError("all initial weight matrices must have the same number of trajectories")

    @classmethod
    def create(
        cls,
        rule,
        network: AbstractNetwork,
        observation: AbstractObservationModel,
        *,
        n_trajectories: int = 1,
        initial_weights: Mapping[str, Array] | None = None,
        key: PRNGKeyArray | None = None,
        init_scale: float = 0.1,
    ) -> "PlasticityModel":
        """Build a model with initial weights given (one set, broadcast) or drawn as ``init_scale·N(0,1)``."""
        shapes = network.weight_shapes()
        if initial_weights is None:
            if key is None:
                raise ModelError("give either initial_weights or a PRNG key to draw them")
            keys = jax.random.split(key, n_trajectories)
            w0 = jax.vmap(lambda k: network.init_weights(k, init_scale))(keys)
        else:
            w0 = {}
            for name, shape in shapes.items():
                if name not in initial_weights:
                    raise ModelError(f"initial_weights lacks {name!r}; the network needs {sorted(shapes)}")
                w = jnp.asarray(initial_weights[name])
                if tuple(w.shape) == tuple(shape):
                    w = jnp.broadcast_to(w, (n_trajectories,) + tuple(shape))
                elif w.ndim != len(shape) + 1 or tuple(w.shape[1:]) != tuple(shape):
                    raise ModelError(
                        f"initial_weights[{name!r}] has shape {tuple(w.shape)}; the network's {name!r} weights have shape "
                        f"{tuple(shape)}: give one set of that shape (shared by every trajectory) or one per trajectory, "
                        f"{(n_trajectories,) + tuple(shape)}"
                    )
                elif w.shape[0] != n_trajectories and n_trajectories != 1:
                    raise ModelError(
                        f"initial_weights[{name!r}] holds {w.shape[0]} trajectories but n_trajectories={n_trajectories}; "
                        f"give one set of shape {tuple(shape)} (shared) or one per trajectory, {(n_trajectories,) + tuple(shape)}"
                    )
                w0[name] = w
        return cls(rule, network, observation, w0)

    @property
    def n_trajectories(self) -> int:
        return int(next(iter(self.initial_weights.values())).shape[0])

    def simulate_trajectory(self, index: int, trials: dict[str, Array], **kwargs) -> Trajectory:
        """Simulate trajectory ``index`` (its own initial weights) on one trajectory's trials."""
        w0 = {k: v[index] for k, v in self.initial_weights.items()}
        return simulate(self.rule, self.network, w0, trials, **kwargs)

    def simulate(self, inputs: dict[str, Array], **kwargs) -> Trajectory:
        """Simulate every trajectory; ``inputs`` leaves have leading (trajectory, trial) axes."""
        self._check_data_inputs(inputs)
        return jax.vmap(lambda w0, trials: simulate(self.rule, self.network, w0, trials, **kwargs))(
            self.initial_weights, inputs
        )

    def log_likelihood(self, data: TrialData, *, checkpoint: bool | int = True) -> Float[Array, "trajectory trial"]:
        """Log-likelihood of every trial (summed over the neurons/entries within it)."""
        self._check_data_inputs(data.inputs)
        if data.n_trajectories != self.n_trajectories:
            raise ModelError(
                f"data has {data.n_trajectories} trajectories but the model has initial weights for "
                f"{self.n_trajectories}; build the model with n_trajectories={data.n_trajectories}"
            )
        mask = jnp.broadcast_to(data.mask, data.observations.shape)

        def one(w0, trials, obs, m):
            traj = simulate(self.rule, self.network, w0, trials, checkpoint=checkpoint)
            return jax.vmap(self.observation.trial_log_prob)(traj.outputs, obs, m)

        return jax.vmap(one)(self.initial_weights, data.inputs, data.observations, mask)

    def penalty(self) -> Float[Array, ""]:
        """L1 penalty of the rule's sparse coefficients."""
        rules = self.rule.values() if isinstance(self.rule, Mapping) else [self.rule]
        total = jnp.zeros(())
        for r in rules:
            if isinstance(r, AbstractRule):
                total = total + r.penalty()
        return total

    def check_data(self, data: TrialData, name: str = "data", *, rule_fitted: bool = True) -> None:
        """Refuse data this model cannot run on or score, with a :class:`ModelError` saying what to change.

        Checks the number of trajectories, that every reward term of a Taylor rule that is fitted
        (``rule_fitted``) has a reward to read, that the network runs on one trial's inputs (traced, not run), and what the
        observation model needs (:meth:`AbstractObservationModel.check_data`: shapes, choice codes,
        counts). ``fit``, ``fit_independent`` and ``bayes.sample`` call it before any work.
        """
        if data.n_trajectories != self.n_trajectories:
            raise ModelError(
                f"model has initial weights for {self.n_trajectories} trajectories but {name} has "
                f"{data.n_trajectories}; build it with PlasticityModel.create(..., n_trajectories={data.n_trajectories})"
            )
        if "reward" not in data.inputs and rule_fitted:  # a rule held as it is may carry inactive reward terms
            for where, rule in self.taylor_rules().items():
                free = [t.name for t, fixed in zip(rule.terms, rule.fixed) if t.r > 0 and not fixed]
                if free:
                    label = "the rule" if where == "rule" else f"the rule of {where!r}"
                    shown = free if len(free) <= 4 else free[:4] + [f"… {len(free)} in all"]
                    raise ModelError(
                        f"{label} has reward terms {shown}, but {name} has no reward (inputs {sorted(data.inputs)}): r is 0 "
                        "on every trial, so their coefficients cannot be fitted. Drop them (a rule over x, y, w only) or "
                        "give the data a reward variable"
                    )
        trials = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), data.inputs)
        w0 = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in self.initial_weights.items()}
        try:
            traj = eqx.filter_eval_shape(
                lambda w, t: simulate(self.rule, self.network, w, t, checkpoint=False), w0, trials
            )
        except (TypeError, ValueError) as e:
            if isinstance(e, PlasticInferError) and e.__cause__ is None:
                raise  # a library error with its own advice (e.g. CovarianceRule with one sample per trial)
            per_trial = {k: tuple(v.shape[2:]) for k, v in data.inputs.items()}
            e = e.__cause__ if e.__cause__ is not None else e  # simulate's own message wraps the same cause
            raise ModelError(
                f"the network {type(self.network).__name__} (weights {self.network.weight_shapes()}) cannot run on "
                f"{name}'s inputs (per trial: {per_trial}): {str(e).splitlines()[0].rstrip('.')}. Build the "
                "network with the data's sizes"
            ) from None
        obs = np.asarray(data.observations)
        self.observation.check_data(tuple(traj.outputs.shape[1:]), obs, np.asarray(data.mask), name)

    def _check_data_inputs(self, inputs):
        for name, leaf in inputs.items():
            if leaf.shape[0] != self.n_trajectories:
                raise ModelError(
                    f"inputs[{name!r}] has {leaf.shape[0]} trajectories but the model has {self.n_trajectories}"
                )

    def split_trajectories(self) -> "PlasticityModel":
        """One single-trajectory model per trajectory, stacked along a leading axis of every array leaf.

        Every copy starts from this model's rule, network and observation model and its own
        initial weights; :func:`fit_independent` fits them as one vmapped batch.
        """
        return eqx.filter_vmap(
            lambda w0: PlasticityModel(
                self.rule, self.network, self.observation, jax.tree_util.tree_map(lambda a: a[None], w0)
            )
        )(self.initial_weights)

    def taylor_rules(self) -> dict[str, TaylorRule]:
        """The model's Taylor rules by weight name (``"rule"`` for a single rule)."""
        if isinstance(self.rule, Mapping):
            return {k: v for k, v in self.rule.items() if isinstance(v, TaylorRule)}
        return {"rule": self.rule} if isinstance(self.rule, TaylorRule) else {}


def one_float_dtype(tree, like=()):
    """``tree`` with every floating-point array in one dtype: the widest among them and those of ``like`` (at JAX's precision).

    A model whose parts differ in precision (float32 initial weights read from a file beside float64
    coefficients), or a float32 model (saved in a float32 session) fitted to float64 data after
    ``jax_enable_x64``, would otherwise change dtype inside the optimiser's loop, which JAX refuses.
    Fits and samplers call this on the model they are given, with the data as ``like``.
    """
    is_float = lambda a: eqx.is_array(a) and jnp.issubdtype(a.dtype, jnp.floating)  # noqa: E731
    own = {a.dtype for a in jax.tree_util.tree_leaves(tree) if is_float(a)}
    dtypes = own | {a.dtype for a in jax.tree_util.tree_leaves(like) if is_float(a)}
    if not own or len(dtypes) <= 1:
        return tree
    dtype = jax.dtypes.canonicalize_dtype(max(dtypes, key=lambda d: jnp.finfo(d).bits))  # the widest (no promotion rules)
    if own == {dtype}:
        return tree
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if is_float(a) else a, tree)
