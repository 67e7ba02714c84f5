"""Which of a model's parameters a posterior samples, and how to read and write them.

A *parameter group* is one block of a :class:`~plasticinfer.PlasticityModel`'s parameters —
a rule's free Taylor coefficients (named by term), the initial weights, one observation or
network parameter — with the functions that read it from a model and place a value into it.
The same list serves the NumPyro model, the warm start, the ArviZ dimensions and the parameter
counts of AIC/BIC, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array

from .._errors import ModelError
from .._model import PlasticityModel
from .._rules import TaylorRule

RULE, INITIAL_WEIGHTS, OBSERVATION, NETWORK = "rule", "initial_weights", "observation", "network"


@dataclass(frozen=True)
class ParameterGroup:
    """One sampled block of parameters.

    Attributes:
        name: the NumPyro site and posterior variable (``"theta"``, ``"bias"``, ``"initial_w"``, …).
        part: which part of the model it belongs to (rule, initial_weights, observation, network).
        shape: shape of the block (initial weights: with the leading trajectory axis).
        labels: term names for Taylor coefficients (the ``term`` coordinate), else ``None``.
        dims: ArviZ dimension names, one per axis of ``shape``.
        get: ``model -> value``.
        set: ``(model, value) -> model``.
    """

    name: str
    part: str
    shape: tuple[int, ...]
    labels: tuple[str, ...] | None
    dims: tuple[str, ...]
    get: Callable[[PlasticityModel], Array]
    set: Callable[[PlasticityModel, Array], PlasticityModel]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=int))

    def scalar_names(self) -> list[str]:
        """One readable name per scalar: ``theta[x*r]``, ``bias``, ``initial_w[0,0,1]``."""
        if self.labels is not None:
            return [f"{self.name}[{lab}]" for lab in self.labels]
        if not self.shape:
            return [self.name]
        return [f"{self.name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*self.shape)]


def _follow(tree, path):
    for k in path:
        if isinstance(k, jax.tree_util.GetAttrKey):
            tree = getattr(tree, k.name)
        elif isinstance(k, jax.tree_util.DictKey):
            tree = tree[k.key]
        elif isinstance(k, jax.tree_util.SequenceKey):
            tree = tree[k.idx]
        else:  # pragma: no cover - flattened-index keys only occur in custom pytrees
            raise ModelError(f"cannot follow pytree key {k!r}: parameters must sit in module fields, dicts or tuples")
    return tree


def _path_name(path) -> str:
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
    return "_".join(parts)


def held_fields(module) -> set[str]:
    """Fields of an observation model or network that a fit leaves unchanged and a posterior must hold:
    what the module's own ``held_fields()`` names (e.g. ``BernoulliChoice(learn_temperature=False)`` its
    inverse temperature, ``AcceptReject(learn_weight=False)`` its slope: their gradients are stopped, so
    sampling them would be wrong; a ``ChoiceCircuit`` without ``reward_expectation`` never reads
    ``expectation_logit``)."""
    own = getattr(module, "held_fields", None)
    return set(own()) if callable(own) else set()


def _rule_groups(model: PlasticityModel) -> list[ParameterGroup]:
    rules = model.rule if isinstance(model.rule, Mapping) else {None: model.rule}
    out = []
    for key, rule in rules.items():
        suffix = "" if key is None else f"_{key}"
        where = (lambda m: m.rule) if key is None else (lambda m, k=key: m.rule[k])
        if isinstance(rule, TaylorRule):
            free = np.flatnonzero(~np.asarray(rule.fixed, dtype=bool))
            if free.size == 0:
                continue
            out.append(
                ParameterGroup(
                    name=f"theta{suffix}",
                    part=RULE,
                    shape=(int(free.size),),
                    labels=tuple(rule.names[i] for i in free),
                    dims=(f"term{suffix}",),
                    get=lambda m, w=where, f=free: w(m).coeffs[f],
                    set=lambda m, v, w=where, f=free: eqx.tree_at(lambda mm: w(mm).coeffs, m, w(m).coeffs.at[f].set(v)),
                )
            )
        else:
            params, static = eqx.partition(rule, eqx.is_inexact_array)
            flat, unravel = ravel_pytree(params)
            if flat.size == 0:
                continue

            def get(m, w=where):
                return ravel_pytree(eqx.filter(w(m), eqx.is_inexact_array))[0]

            def set_(m, v, w=where, unravel=unravel, static=static):
                return eqx.tree_at(w, m, eqx.combine(unravel(v), static))

            out.append(
                ParameterGroup(f"rule_params{suffix}", RULE, (int(flat.size),), None, (f"rule_param{suffix}",), get, set_)
            )
    return out


def _module_groups(model: PlasticityModel, part: str, prefix: str) -> list[ParameterGroup]:
    module = getattr(model, part)
    held = held_fields(module)
    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(module, eqx.is_inexact_array))[0]
    out = []
    for path, leaf in leaves:
        if not path or not isinstance(path[0], jax.tree_util.GetAttrKey) or path[0].name in held:
            continue
        name = prefix + _path_name(path)
        shape = tuple(int(s) for s in np.shape(leaf))
        out.append(
            ParameterGroup(
                name=name,
                part=part,
                shape=shape,
                labels=None,
                dims=tuple(f"{name}_dim{k}" for k in range(len(shape))),
                get=lambda m, p=path, part=part: _follow(getattr(m, part), p),
                set=lambda m, v, p=path, part=part: eqx.tree_at(lambda mm: _follow(getattr(mm, part), p), m, v),
            )
        )
    return out


def _initial_weight_groups(model: PlasticityModel) -> list[ParameterGroup]:
    out = []
    for name in sorted(model.initial_weights):
        shape = tuple(int(s) for s in model.initial_weights[name].shape)
        out.append(
            ParameterGroup(
                name=f"initial_{name}",
                part=INITIAL_WEIGHTS,
                shape=shape,
                labels=None,
                dims=("subject",) + tuple(f"{name}_dim{k}" for k in range(1, len(shape))),
                get=lambda m, n=name: m.initial_weights[n],
                set=lambda m, v, n=name: eqx.tree_at(lambda mm: mm.initial_weights[n], m, v),
            )
        )
    return out


def parameter_groups(
    model: PlasticityModel, *, rule: bool = True, initial_weights: bool = True, observation: bool = True, network: bool = True
) -> tuple[ParameterGroup, ...]:
    """The free parameter blocks of ``model``, in a fixed order (rule, observation, network, initial weights)."""
    groups: list[ParameterGroup] = []
    if rule:
        groups += _rule_groups(model)
    if observation:
        groups += _module_groups(model, OBSERVATION, "")
    if network:
        groups += _module_groups(model, NETWORK, "network_")
    if initial_weights:
        groups += _initial_weight_groups(model)
    names = [g.name for g in groups]
    if len(set(names)) != len(names):  # pragma: no cover - field names are unique per module
        raise ModelError(f"parameter names collide: {names}")
    return tuple(groups)


def _model_log_likelihood(model, data):
    return model.log_likelihood(data)


def _summed_log_likelihood(w0, model, data, log_likelihood):
    with jax.numpy_dtype_promotion("standard"):
        return jnp.sum(log_likelihood(eqx.tree_at(lambda m: m.initial_weights, model, w0), data))


#: compiled once per model structure and data shape (folds of one comparison share it)
_initial_weight_gradient = eqx.filter_jit(jax.grad(_summed_log_likelihood))


def reachable_initial_weights(model: PlasticityModel, data, *, log_likelihood: Callable | None = None,
                              count_nonfinite: bool = True) -> dict[str, np.ndarray]:
    """Which initial-weight entries the log-likelihood of ``data`` depends on: booleans shaped like each array.

    An entry is reachable where the gradient of the summed log-likelihood is non-zero at the model's values or
    at a copy with every free parameter randomly perturbed (rule, observation, network, initial weights), so a
    coincidental zero at an optimum or at a rule starting from 0 does not hide one; a non-finite gradient
    counts as reached unless ``count_nonfinite=False``. In a feed-forward layer the rows onto an output neuron a
    trajectory never records are not reachable (nothing downstream of that neuron is observed, and a fit leaves
    them where they started), nor the columns of an input that is 0 in every trial.

    ``log_likelihood(model, data)`` replaces ``model.log_likelihood(data)`` (e.g. for a stack of per-subject
    models; pass a module-level function so that the compiled gradient is reused).
    """
    log_likelihood = log_likelihood or _model_log_likelihood
    w = dict(model.initial_weights)
    # the copy moves every free parameter (parameter_groups: not a fixed term, not a held field), not only the
    # initial weights: a rule whose coefficients start at 0 has no plastic path at its start, and an entry reached
    # only through learning would look unreached there; a rule fixed at 0 (static weights) keeps none
    moved, groups = model, parameter_groups(model)
    for g, k in zip(groups, jax.random.split(jax.random.key(0), len(groups) or 1)):
        v = jnp.asarray(g.get(moved))
        moved = g.set(moved, v + 0.05 * (jnp.std(v) + 1e-3) * jax.random.normal(k, v.shape, v.dtype))
    g0 = _initial_weight_gradient(w, model, data, log_likelihood)
    g1 = _initial_weight_gradient(dict(moved.initial_weights), moved, data, log_likelihood)
    out = {}
    for n in w:
        a, b = np.asarray(g0[n]), np.asarray(g1[n])
        out[n] = (np.isfinite(a) & (a != 0)) | (np.isfinite(b) & (b != 0))
        if count_nonfinite:
            out[n] |= ~np.isfinite(a) | ~np.isfinite(b)
    return out


def count_free_parameters(model: PlasticityModel, *, initial_weights: bool = True, per_trajectory: bool = False,
                          data=None, reachable: dict | None = None) -> int | np.ndarray:
    """Number of free scalar parameters a fit changes (for AIC/BIC).

    With ``per_trajectory`` the initial weights of one trajectory are counted (a per-subject fit);
    otherwise all of them. With ``data`` (the data the model was fitted to), only the initial-weight entries
    its likelihood reaches count (:func:`reachable_initial_weights`: not the weights onto an output neuron
    never recorded); with ``per_trajectory`` as well, the result is one count per trajectory. ``reachable``: the
    result of :func:`reachable_initial_weights` when already at hand, in place of ``data``.
    """
    total = 0
    for g in parameter_groups(model, initial_weights=False):
        total += g.size
    # a subclass's own fitted arrays (a population model's log σ) count too
    for f in dataclasses.fields(model):
        if f.name not in ("rule", "network", "observation", "initial_weights"):
            total += sum(int(a.size) for a in jax.tree_util.tree_leaves(getattr(model, f.name)) if eqx.is_inexact_array(a))
    if not initial_weights:
        return total
    if data is None and reachable is None:
        for g in _initial_weight_groups(model):
            total += g.size // g.shape[0] if per_trajectory else g.size
        return total
    reach = reachable if reachable is not None else reachable_initial_weights(model, data)
    per_traj = sum(r.reshape(r.shape[0], -1).sum(1) for r in reach.values())
    return total + per_traj.astype(int) if per_trajectory else total + int(per_traj.sum())


__all__ = ["ParameterGroup", "parameter_groups", "count_free_parameters", "reachable_initial_weights", "held_fields"]
