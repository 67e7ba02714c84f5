"""`simulate`: run a rule inside a network over a sequence of trials (a pure function over `lax.scan`)."""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from . import _fused
from ._errors import ModelError, PlasticInferError
from ._networks import AbstractNetwork


_AUTO_CHECKPOINT_ELEMENTS = 2**18


class Trajectory(eqx.Module):
    """What a simulation returns.

    Attributes:
        outputs: the network's output on every trial, leading axis ``trial``.
        final_weights: the weights after the last trial.
        weights: the weights *used on* every trial (before that trial's update), leading
            axis ``trial``; ``None`` unless ``save_weights=True``.
        final_state: the network state after the last trial.
        records: with an environment, what it recorded on every trial (leading axis ``trial``;
            e.g. the choice, the reward and P(choice)); ``None`` without one.
    """

    outputs: Array
    final_weights: dict[str, Array]
    weights: dict[str, Array] | None = None
    final_state: Any = None
    records: Any = None


class AbstractEnvironment(eqx.Module):
    """A task that answers the network: it makes each trial's inputs from the network as it is (closed loop).

    :func:`simulate` with ``environment=`` calls :meth:`trial` before every network step: it gets the
    network, its weights on that trial, the environment's own state, the trial's entry of the given
    ``trials`` (a schedule, e.g. reward probabilities) and a key of its own, and returns the inputs for
    ``network.step``, its next state and a record of the trial.
    """

    @abc.abstractmethod
    def initial_state(self) -> Any:
        """The environment's state before the first trial (a pytree of arrays; ``None`` if it keeps none)."""

    @abc.abstractmethod
    def trial(self, network: AbstractNetwork, weights, state, schedule, key: PRNGKeyArray) -> tuple[dict, Any, Any]:
        """``(inputs for network.step, next state, record)`` for one trial."""


def _keep_float_dtype(new, old):
    """``new`` in ``old``'s floating dtype (float32 weights stay float32 under a float64 rule); anything else as it is."""
    if hasattr(old, "dtype") and hasattr(new, "dtype") and jnp.issubdtype(old.dtype, jnp.floating) and jnp.issubdtype(new.dtype, jnp.floating):
        return new.astype(old.dtype)
    return new


def _n_trials(trials) -> int:
    leaves = jax.tree_util.tree_leaves(trials)
    if not leaves:
        raise ModelError("simulate needs at least one trial input")
    n = leaves[0].shape[0]
    for leaf in leaves:
        if leaf.shape[0] != n:
            raise ModelError(f"trial inputs disagree on the number of trials: {[l.shape[0] for l in leaves]}")
    return n


def simulate(
    rule,
    network: AbstractNetwork,
    weights: dict[str, Array],
    trials: dict[str, Array],
    *,
    state=None,
    save_weights: bool = False,
    checkpoint: bool | int = True,
    environment: AbstractEnvironment | None = None,
    key: PRNGKeyArray | None = None,
) -> Trajectory:
    """Simulate learning over trials.

    Args:
        rule: a rule (an :class:`AbstractRule`, called as the network decides: the core networks
            call ``rule(pre, post, weight, reward) -> Δw``) or a dict of rules keyed by weight name.
        network: the network.
        weights: initial weights, a dict as in ``network.weight_shapes()``.
        trials: dict of per-trial inputs, each with leading axis ``trial``.
        state: initial network state (default ``network.initial_state(weights)``).
        save_weights: also return the weights used on every trial.
        checkpoint: reverse-mode memory control. ``True`` (default) splits the trials into
            about √T segments and recomputes each segment in the backward pass, so memory
            grows as √T × weights instead of T × weights — whenever trials × weights reaches
            2¹⁸ elements (below that, storing every step is cheaper than recomputing). An int
            forces that segment length (1: every step is recomputed from its stored input weights,
            the fastest for small layers with many operations per step, such as meta-learning's
            networks); ``False`` stores every step.
        environment: a closed-loop task (e.g. :class:`~plasticinfer.data.BaitedBandit`) that makes every
            trial's inputs from the network as it is; ``trials`` is then its schedule (one entry per
            trial, e.g. reward probabilities) and ``key`` is split into one key per trial for it.
        key: with an environment, the PRNG key of its random draws.

    Returns:
        A :class:`Trajectory`.
    """
    if not (callable(getattr(network, "step", None)) and callable(getattr(network, "weight_shapes", None))):
        raise ModelError(f"simulate: network must be a network (FeedForward, Recurrent, ChoiceCircuit, …); got {type(network).__name__}")
    if isinstance(rule, str) or not (callable(rule) or isinstance(rule, Mapping)):
        raise ModelError(
            f"simulate: rule must be a rule (TaylorRule, MLPRule, …) or a dict of rules by weight name; got {type(rule).__name__}"
            + (f". For an equation: pi.TaylorRule.from_equation({rule!r})" if isinstance(rule, str) else "")
        )
    checked = (("weights", weights, "{'w': w0}"),) + ((("trials", trials, "{'x': inputs}"),) if environment is None else ())
    for what, value, example in checked:  # with an environment, trials is its schedule (any array or pytree)
        if not isinstance(value, Mapping):
            raise ModelError(f"simulate: {what} must be a dict of arrays by name, e.g. {example}; got {type(value).__name__}")
    if environment is None:
        trials = {k: v if hasattr(v, "shape") else jnp.asarray(v) for k, v in trials.items()}  # lists of numbers, too
    shapes = network.weight_shapes()
    if set(weights) != set(shapes):
        raise ModelError(f"weights have names {sorted(weights)} but the network needs {sorted(shapes)}")
    for name, shape in shapes.items():
        if tuple(weights[name].shape) != tuple(shape):
            raise ModelError(f"weights[{name!r}] has shape {tuple(weights[name].shape)}; the network needs {tuple(shape)}")
        dtype = getattr(weights[name], "dtype", None)
        if dtype is not None and not jnp.issubdtype(dtype, jnp.floating):
            # integer weights cannot hold a fractional update (lax.scan refused the promoted carry)
            raise ModelError(f"weights[{name!r}] has dtype {dtype}; plastic weights must be floating: jnp.asarray(w, float)")
    n = _n_trials(trials)
    if state is None:
        state = network.initial_state(weights)
    if environment is None:
        env_state = None
        if key is not None:
            raise ModelError("simulate: key= is for an environment's random draws; pass environment= too (or drop key)")
    else:
        if key is None:
            raise ModelError(f"simulate with an environment ({type(environment).__name__}) needs key= for its random draws")
        env_state = environment.initial_state()
        trials = (trials, jax.random.split(key, n))

    def body(carry, trial):
        w, s, e = carry
        record = None
        if environment is not None:
            schedule, k = trial
            trial, e, record = environment.trial(network, w, e, schedule, k)
        try:
            w_new, s_new, out = network.step(rule, w, s, trial)
        except (PlasticInferError, jax.errors.JAXTypeError):
            raise  # our own messages, and JAX's tracer errors (a rule's Python `if` on an array) with their own advice
        except (TypeError, ValueError) as e:  # at trace time: shapes that do not fit the network
            per_trial = {k: tuple(getattr(v, "shape", ())) for k, v in trial.items()} if isinstance(trial, Mapping) else trial
            raise ModelError(
                f"the network {type(network).__name__} (weights {network.weight_shapes()}) cannot run on one trial's "
                f"inputs {per_trial}: {str(e).splitlines()[0].rstrip('.')}. Give inputs that fit the network "
                "(its sizes, and one dtype throughout)"
            ) from e
        # the carry keeps the initial weights' dtype (float32 weights under a float64 rule would promote,
        # and lax.scan refuses a carry that changes type)
        w_new = jax.tree_util.tree_map(_keep_float_dtype, w_new, w)
        s_new = jax.tree_util.tree_map(_keep_float_dtype, s_new, s)
        return (w_new, s_new, e), (out, w if save_weights else None, record)

    if checkpoint is not True and checkpoint and int(checkpoint) < 1:
        raise ModelError(f"simulate: checkpoint must be True, False or a segment length ≥ 1 (got {checkpoint!r})")
    if _fused.requested(rule):  # TaylorRule(derivative="fused"): the whole run in compiled kernels
        return _fused.simulate_fused(rule, network, weights, trials, state=state, save_weights=save_weights, environment=environment)
    if checkpoint is True:  # automatic: recomputation only pays when storing every step would be large
        n_weights = sum(int(w.size) for w in jax.tree_util.tree_leaves(weights))
        checkpoint = True if n * n_weights >= _AUTO_CHECKPOINT_ELEMENTS else False
    if not checkpoint or n <= 4:
        (wf, sf, _), (outs, ws, records) = jax.lax.scan(body, (weights, state, env_state), trials)
        return Trajectory(outs, wf, ws, sf, records)

    seg = int(checkpoint) if checkpoint is not True else max(1, int(math.ceil(math.sqrt(n))))
    if seg == 1:  # every step rematerialised: one scan of checkpointed steps (no nesting, one compiled body)
        (wf, sf, _), (outs, ws, records) = jax.lax.scan(jax.checkpoint(body), (weights, state, env_state), trials)
        return Trajectory(outs, wf, ws, sf, records)
    n_seg, rem = divmod(n, seg)

    @jax.checkpoint
    def segment(carry, seg_inputs):
        return jax.lax.scan(body, carry, seg_inputs)

    # full segments in an outer scan; the remainder (if any) as one more checkpointed segment,
    # so no step needs a padding mask (which would cost extra passes over the weights)
    head = jax.tree_util.tree_map(lambda a: a[: n_seg * seg].reshape((n_seg, seg) + a.shape[1:]), trials)
    carry, stacked = jax.lax.scan(segment, (weights, state, env_state), head)
    outs, ws, records = jax.tree_util.tree_map(lambda a: a.reshape((n_seg * seg,) + a.shape[2:]), stacked)
    if rem:
        tail = jax.tree_util.tree_map(lambda a: a[n_seg * seg :], trials)
        carry, tail_out = segment(carry, tail)
        outs, ws, records = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b], axis=0), (outs, ws, records), tail_out)
    wf, sf, _ = carry
    return Trajectory(outs, wf, ws, sf, records)
