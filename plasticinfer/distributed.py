"""Runs across processes and machines on JAX's distributed runtime.

One process per machine (or per GPU) runs the same script. :func:`initialize` connects them
(from Slurm's environment, ``JAX_*`` variables or explicit arguments; a no-op for one process).
Batches of independent work — per-subject fits, NUTS chains, anything passed to :func:`map` — are
then split by process: each process runs its share on its own devices (where ``fit`` shards it
further), the results are gathered onto every process over JAX's collectives (gloo on CPU), and
:func:`write_once` lets process 0 alone write the output file, atomically.

Every function here is *collective* when more than one process runs: all processes must call it,
in the same order, with the same arguments (the same data, model and key); :func:`fit_independent`,
:func:`sample` and :func:`map` check that they were (:func:`check_same_inputs`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import equinox as eqx
import jax
import numpy as np

from ._errors import DistributedError as DistributedError

T = TypeVar("T")

__all__ = [
    "DistributedError",
    "check_same_inputs",
    "fingerprint",
    "fit_independent",
    "gather_objects",
    "initialize",
    "is_main",
    "map",
    "process_count",
    "process_index",
    "sample",
    "share",
    "unshard",
    "write_once",
]




# --------------------------------------------------------------------------------------
# Starting the runtime
# --------------------------------------------------------------------------------------


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} must be an integer") from None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    timeout: int = 300,
) -> int:
    """Connect this process to the others; returns the number of processes.

    Call it at the top of the script, before any JAX computation. Where the settings come from,
    first match wins:

    1. the arguments;
    2. ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
    3. Slurm (``srun`` sets ``SLURM_NTASKS``, ``SLURM_PROCID``, …; JAX derives the coordinator from
       the job's first node);
    4. none of these: a single process, and ``initialize`` does nothing.

    Calling it again after a successful start does nothing. CPU processes exchange results over
    gloo (JAX's default CPU collectives).

    Args:
        coordinator_address: ``host:port`` of process 0, reachable from every process.
        num_processes: number of processes.
        process_id: this process's index, ``0 … num_processes − 1``.
        local_device_ids: devices this process uses (default: JAX's choice; under Slurm on GPUs, one each).
        timeout: seconds to wait for every process to connect. If one never does (too large a
            ``num_processes``, process 0 not started or unreachable), JAX's distributed client then
            aborts this process natively (SIGABRT, ``DEADLINE_EXCEEDED``); it raises no Python exception.
    """
    if jax.distributed.is_initialized():
        return jax.process_count()
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    slurm_tasks = _env_int("SLURM_NTASKS") if "SLURM_JOB_ID" in os.environ and "SLURM_PROCID" in os.environ else None
    explicit = coordinator_address is not None or num_processes is not None or process_id is not None
    if not explicit and (slurm_tasks is None or slurm_tasks <= 1):
        return 1  # one process: nothing to connect
    if explicit:
        if num_processes == 1:
            return 1
        missing = [n for n, v in [("coordinator_address (JAX_COORDINATOR_ADDRESS)", coordinator_address),
                                  ("num_processes (JAX_NUM_PROCESSES)", num_processes),
                                  ("process_id (JAX_PROCESS_ID)", process_id)] if v is None]
        if missing and slurm_tasks is None:
            raise DistributedError(
                f"a multi-process run needs {', '.join(missing)} as well; give all three, or launch with srun under Slurm"
            )
        if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
            raise DistributedError(f"process_id must be in 0 … {num_processes - 1}; got {process_id}")
    try:
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            local_device_ids=local_device_ids,
            initialization_timeout=timeout,
        )
    except (RuntimeError, ValueError) as e:  # JAX: computations already ran, a bad address (a missing process aborts natively)
        raise DistributedError(
            f"the distributed runtime did not start ({e}). Call plasticinfer.distributed.initialize() first thing in "
            f"the script, before any JAX computation, and check that {coordinator_address or 'the coordinator'} is "
            "reachable from every process and that every process was started"
        ) from e
    return jax.process_count()


def process_index() -> int:
    """This process's index (0 for a single process)."""
    return jax.process_index()


def process_count() -> int:
    """Number of processes (1 unless :func:`initialize` connected several)."""
    return jax.process_count()


def is_main() -> bool:
    """Whether this is process 0, the one that writes results."""
    return jax.process_index() == 0


# --------------------------------------------------------------------------------------
# Splitting and gathering
# --------------------------------------------------------------------------------------


def share(n: int, *, process: int | None = None, processes: int | None = None) -> range:
    """This process's contiguous block of ``range(n)``; block sizes differ by at most one."""
    processes = jax.process_count() if processes is None else processes
    process = jax.process_index() if process is None else process
    base, extra = divmod(n, processes)
    start = process * base + min(process, extra)
    return range(start, start + base + (process < extra))


def gather_objects(obj: Any) -> list:
    """Every process's ``obj`` (picklable), in process order, on every process (a collective)."""
    if jax.process_count() == 1:
        return [obj]
    from jax.experimental.multihost_utils import process_allgather

    payload = np.frombuffer(pickle.dumps(jax.device_get(obj), protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
    sizes = np.asarray(process_allgather(np.asarray([payload.size], np.int32))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: payload.size] = payload
    everything = np.asarray(process_allgather(padded))
    return [pickle.loads(everything[i, : int(sizes[i])].tobytes()) for i in range(len(sizes))]


def map(fn: Callable[[Any], T], items: Sequence) -> list[T]:  # noqa: A001 - mirrors the builtin on purpose
    """``[fn(item) for item in items]`` with the items split over processes; every process gets the whole list.

    Each process calls ``fn`` on its :func:`share` of the items (so ``fn`` may itself use all of this
    process's devices, e.g. ``fit``); results must be picklable (JAX arrays come back as NumPy arrays).
    ``items`` must be the same on every process: their fingerprints are compared first, and if any
    process's differ from process 0's every process raises :class:`DistributedError`.
    """
    items = list(items)
    check_same_inputs("dist.map", items=items)
    mine = [fn(items[i]) for i in share(len(items))]
    return [r for part in gather_objects(mine) for r in part]


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier called ``name``."""
    if jax.process_count() > 1:
        from jax.experimental.multihost_utils import sync_global_devices

        sync_global_devices(name)


def write_once(write: Callable[[], T], *, name: str = "plasticinfer.write_once") -> T | None:
    """Run ``write()`` on process 0 only (e.g. ``lambda: result.save(path)``), then wait for it everywhere.

    plasticinfer's writers are atomic (a temporary file, then a rename), so readers never see
    half a file. Returns ``write()``'s value on process 0 and ``None`` elsewhere.

    Every process learns whether the write succeeded: if ``write()`` raises on process 0, process 0
    re-raises its error and every other process raises :class:`DistributedError` quoting it (``name``
    labels the write in that message), instead of waiting for a process 0 that is gone.
    """
    out, failure = None, None
    if is_main():
        try:
            out = write()
        except BaseException as e:  # re-raised below, once the others know
            failure = e
    if jax.process_count() > 1:
        # Process 0's outcome, sent to every process; the gather is also the barrier.
        outcome = None if failure is None else f"{type(failure).__name__}: {failure}"
        reported = gather_objects(outcome)[0]
        if failure is None and reported is not None:
            raise DistributedError(
                f"{name}: process 0 failed to write, so nothing was written ({reported}). Fix what process 0 reports "
                "(see its log) and run again"
            )
    if failure is not None:
        raise failure
    return out


def unshard(tree):
    """The same values with every array on this process's default device, not laid out on a mesh.

    Arrays sharded by a fit (its restarts or subjects split across devices) keep that fit's
    device mesh; mixing them into another device layout — NumPyro's ``pmap`` over chains, a fit
    on other devices — fails with ``Context mesh … should match the mesh of sharding``. Arrays on
    a single device are returned as they are; dataclasses such as ``FitResult`` are unsharded field by
    field. An array spanning several processes is gathered (a collective).
    """
    from jax.sharding import SingleDeviceSharding

    def is_record(x):
        return dataclasses.is_dataclass(x) and not isinstance(x, (type, eqx.Module))

    def local(x):
        if is_record(x):
            return dataclasses.replace(x, **{f.name: unshard(getattr(x, f.name)) for f in dataclasses.fields(x) if f.init})
        if not isinstance(x, jax.Array) or isinstance(x.sharding, SingleDeviceSharding):
            return x
        if x.is_fully_addressable:
            return jax.device_put(np.asarray(x))
        from jax.experimental.multihost_utils import process_allgather

        return jax.device_put(np.asarray(process_allgather(x, tiled=True)))

    return jax.tree_util.tree_map(local, tree, is_leaf=is_record)


# --------------------------------------------------------------------------------------
# Distributed fits and samplers
# --------------------------------------------------------------------------------------


def _digest_into(h, obj, seen: int = 0) -> None:
    """Feed ``obj``'s content into the hash ``h``: arrays by shape, dtype and bytes; containers by their items.

    Only what is the same in every process running the same script counts: objects whose identity is
    an address (functions, optimisers) contribute their type's name only.
    """
    import xarray as xr

    if seen > 50:  # a deeply self-referencing structure: its type is enough
        h.update(type(obj).__qualname__.encode())
        return
    if isinstance(obj, xr.Dataset):
        for name in sorted(map(str, obj.variables)):
            var = obj.variables[name]
            h.update(f"<var {name} {var.dims}>".encode())
            _digest_into(h, np.asarray(var.values), seen + 1)
        return
    if isinstance(obj, (str, bytes, bool, int, float, complex, type(None), np.generic)):
        h.update(f"<{type(obj).__name__} {obj!r}>".encode())
        return
    if isinstance(obj, jax.Array) and jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):
        obj = jax.random.key_data(obj)
    if isinstance(obj, jax.Array) and not obj.is_fully_addressable:  # spans processes: its layout is all we can see
        h.update(f"<global array {obj.shape} {obj.dtype}>".encode())
        return
    if isinstance(obj, (np.ndarray, jax.Array)):
        a = np.asarray(obj)
        h.update(f"<array {a.shape} {a.dtype}>".encode())
        if a.dtype == object:
            for item in a.ravel():
                _digest_into(h, item, seen + 1)
        else:
            h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))  # the bytes as they are: no second copy
        return
    if isinstance(obj, (range, list, tuple)) and not hasattr(obj, "_fields"):
        h.update(f"<{type(obj).__name__} {len(obj)}>".encode())
        for item in obj:
            _digest_into(h, item, seen + 1)
        return
    if isinstance(obj, dict):
        h.update(f"<dict {len(obj)}>".encode())
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _digest_into(h, obj[k], seen + 1)
        return
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # equinox modules included: field by field
        h.update(f"<{type(obj).__qualname__}>".encode())
        for f in dataclasses.fields(obj):
            h.update(f.name.encode())
            _digest_into(h, getattr(obj, f.name, None), seen + 1)
        return
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    if treedef.num_leaves == 1 and len(leaves) == 1 and leaves[0] is obj:  # not a container JAX knows
        h.update(f"<{type(obj).__qualname__}>".encode())
        return
    h.update(f"<{type(obj).__qualname__} {treedef.num_leaves}>".encode())
    for leaf in leaves:
        _digest_into(h, leaf, seen + 1)


def fingerprint(obj) -> str:
    """A short hash of ``obj``'s content (arrays' shapes, dtypes and bytes, containers' structure), equal across processes for equal inputs."""
    h = hashlib.sha256()
    _digest_into(h, obj)
    return h.hexdigest()[:16]


def check_same_inputs(what: str, **inputs) -> None:
    """Refuse (on every process) when some process was given different ``inputs`` from process 0's (a collective).

    ``what`` names the call in the message; each keyword is one input (``data=…``, ``model=…``, ``key=…``)
    whose :func:`fingerprint` must agree across processes. Does nothing with one process.
    """
    if jax.process_count() == 1:
        return
    mine = {name: fingerprint(value) for name, value in inputs.items()}
    everyone = gather_objects(mine)
    differ = {name: [p for p, prints in enumerate(everyone) if prints.get(name) != everyone[0].get(name)] for name in mine}
    differ = {name: procs for name, procs in differ.items() if procs}
    if differ:
        detail = "; ".join(f"{name} differs from process 0's on process(es) {', '.join(map(str, procs))}" for name, procs in differ.items())
        raise DistributedError(
            f"{what}: the processes were given different inputs ({detail}). Every process must load the same data, "
            "build the same model and pass the same arguments (key included); check that each process reads the same "
            "files and seeds its random numbers identically"
        )



def _select_subjects(model, data, index):
    from ._model import PlasticityModel

    idx = np.asarray(index, dtype=np.int64)
    w0 = {k: v[idx] for k, v in model.initial_weights.items()}
    sub = PlasticityModel(model.rule, model.network, model.observation, w0)
    return sub, jax.tree_util.tree_map(lambda a: a[idx], data)


def _pad_steps(arrays: list[np.ndarray | None]):
    """Concatenate per-process histories along subjects, NaN-padding the step axis to the longest."""
    if any(a is None for a in arrays):
        return None
    longest = max(a.shape[-1] for a in arrays)
    padded = [np.pad(a.astype(float), [(0, 0)] * (a.ndim - 1) + [(0, longest - a.shape[-1])], constant_values=np.nan) for a in arrays]
    return np.concatenate(padded, axis=0)


def fit_independent(model, data, *, key=None, **kwargs):
    """:func:`plasticinfer.fit_independent` with the subjects split over processes; every process gets the whole result.

    Process ``p`` fits its :func:`share` of the subjects (trajectories) on its own devices
    (``devices=jax.local_devices()`` unless given), and the fitted parameters, histories and
    diagnostics are gathered in subject order. With one process this *is* ``fit_independent``.

    The verdict on convergence (``converged``, ``convergence_message`` and the one
    :class:`~plasticinfer.errors.ConvergenceWarning`) is made once, on every subject's gathered loss
    history, by the same diagnosis a one-process run uses; ``interrupted`` is set if any process was.
    Before any work the processes compare fingerprints of ``data``, ``model``, ``key`` and the other
    arguments (all but ``devices``, ``progress`` and ``checkpoint``) and raise :class:`DistributedError` on every
    process if any of them differs from process 0's.

    Each subject's fit is independent of the others, so the gathered coefficients equal a one-process
    run's (to rounding) when ``restarts=1`` (restart 0 starts from the template, unjittered) and no
    ``patience`` is set. Two things are decided per process's batch: the restart jitter (drawn from
    ``key`` for the process's block, so with ``restarts > 1`` the jittered starts differ from a
    one-process run's) and early stopping (``patience`` stops a process when none of *its* subjects improve;
    the subjects of a process that stopped early count as converged, as in a one-process run that stops early).

    Args:
        model: template model with one set of initial weights per trajectory of ``data``.
        data: every subject's data (the same on every process).
        key: PRNG key for restart jitter; every process must pass the same one.
        **kwargs: as for :func:`plasticinfer.fit_independent`.
    """
    from ._errors import ConvergenceWarning
    from ._fit import FitResult, _as_trial_data, _check_data, check_model, fit_independent as _fit_independent, subject_labels
    from ._optimise import CONVERGENCE_TOL, convergence, subject_label

    processes = jax.process_count()
    if processes == 1:
        return unshard(_fit_independent(model, data, key=key, **kwargs))
    local_only = ("devices", "progress", "checkpoint")  # may differ between processes
    given = dict(data=data, model=model, key=key, arguments={k: v for k, v in kwargs.items() if k not in local_only})
    subjects = subject_labels(data)
    data = _as_trial_data(data, "data")
    if "validation" in kwargs:
        kwargs["validation"] = _as_trial_data(kwargs["validation"], "validation")
    n = data.n_trajectories
    check_model(model, "fit_independent")
    _check_data(model, data, "data", rule_fitted=kwargs.get("fit_rule", True))  # all of it, on every process, before any starts
    if n < processes:
        raise DistributedError(
            f"{n} subjects cannot be split over {processes} processes; run with at most {n} processes"
        )
    # after the arguments' own checks (each process refuses bad arguments alike), before any work
    check_same_inputs("dist.fit_independent", **given)
    mine = share(n)
    sub_model, sub_data = _select_subjects(model, data, mine)
    validation = kwargs.pop("validation", None)
    if validation is not None:
        validation = _select_subjects(model, validation, mine)[1]
    kwargs.setdefault("devices", jax.local_devices())
    block_key = None if key is None else jax.random.fold_in(key, mine.start)
    with warnings.catch_warnings():
        # This process's verdict covers its share only; the verdict on all subjects is given below, once.
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = unshard(_fit_independent(sub_model, sub_data, key=block_key, validation=validation, **kwargs))

    params, static = eqx.partition((local.model, local.restarts), eqx.is_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    part = dict(
        leaves=[np.asarray(a) for a in leaves],
        loss=np.asarray(local.loss_history),
        val=None if local.validation_history is None else np.asarray(local.validation_history),
        val_steps=np.asarray(local.validation_steps),
        best=np.asarray(local.best_restart),
        diverged=np.asarray(local.diverged_at),
        stopped_early=bool(local.stopped_early),
        steps_run=int(local.steps_run),
        interrupted=bool(local.interrupted),
    )
    parts = gather_objects(part)
    leaves = [jax.device_put(np.concatenate([p["leaves"][i] for p in parts], axis=0)) for i in range(len(leaves))]
    model_all, restarts_all = eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)
    longest = max(parts, key=lambda p: p["val_steps"].size)
    # The diagnosis a one-process run makes, on every subject's chosen history (each as long as its process ran).
    # A process that stopped early (patience) ended its subjects' fits as a one-process run would have: no verdict.
    chosen = [
        np.zeros(0) if p["stopped_early"] else p["loss"][s, p["best"][s]]
        for p in parts for s in range(p["loss"].shape[0])
    ]
    interrupted = [p for p in parts if p["interrupted"]]
    converged, message, each = convergence(
        chosen, [subject_label(s, subjects) for s in range(n)], tol=kwargs.get("convergence_tol", CONVERGENCE_TOL),
        interrupted=bool(interrupted), stopped_early=all(p["stopped_early"] for p in parts),
        steps_run=min(p["steps_run"] for p in interrupted) if interrupted else max(p["steps_run"] for p in parts),
    )
    return FitResult(
        model=model_all,
        restarts=restarts_all,
        loss_history=_pad_steps([p["loss"] for p in parts]),
        validation_history=_pad_steps([p["val"] for p in parts]),
        validation_steps=longest["val_steps"],
        best_restart=np.concatenate([p["best"] for p in parts]),
        diverged_at=np.concatenate([p["diverged"] for p in parts]),
        stopped_early=any(p["stopped_early"] for p in parts),
        steps_run=max(p["steps_run"] for p in parts),
        independent=True,
        settings={**local.settings, "processes": processes},
        interrupted=bool(interrupted),
        converged=converged,
        convergence_message=message,
        subjects=subjects,
        subject_converged=each,
    )


def sample(
    model, data, *, key, priors=None, method=None, hierarchical=None, init=None, warn: bool = True,
    checkpoint=None, checkpoint_every: int = 50, resume: bool = False, progress: bool = True,
):  # fmt: skip
    """:func:`plasticinfer.bayes.sample` with the NUTS chains split over processes; every process gets the posterior.

    Chain ``c`` uses the same key as in a one-process run, so with the same ``chain_method`` its
    draws are identical; each process runs its :func:`share` of the chains (``"sequential"`` for one
    chain, else ``"parallel"`` over local devices when there are enough, otherwise ``"vectorized"``).
    SVI (one optimisation) is not split: every process computes it. Arguments as for ``sample``;
    ``checkpoint`` works in a one-process run only (several processes would write one file at once).
    With several processes, fingerprints of ``data``, ``model``, ``key``, ``priors``, ``method``,
    ``hierarchical`` and ``init`` are compared first, and a process given different ones from process 0's
    makes every process raise :class:`DistributedError`.
    """
    from ._fit import check_key
    from .bayes._sample import NUTS, NUTSRunner, _check_sampler_checkpoint, finish, prepare, run_sampler

    given = dict(data=data, model=model, key=key, priors=priors, method=method, hierarchical=hierarchical, init=init)
    check_key(key, "sample")
    spec, method, data, latent = prepare(model, data, priors=priors, method=method, hierarchical=hierarchical, init=init)
    _check_sampler_checkpoint(method, checkpoint, checkpoint_every, resume)
    k_run, _ = jax.random.split(key)
    split = isinstance(method, NUTS) and jax.process_count() > 1
    if split and checkpoint is not None:
        raise DistributedError(
            f"checkpoint={str(checkpoint)!r}: NUTS checkpoints are not supported across {jax.process_count()} processes "
            "(each would write the same file); sample in one process to checkpoint, or pass checkpoint=None"
        )
    if split and method.chains < jax.process_count():
        raise DistributedError(
            f"NUTS(chains={method.chains}) cannot be split over {jax.process_count()} processes; "
            f"use at least {jax.process_count()} chains"
        )
    # after the arguments' own checks (each process refuses bad arguments alike), before any work
    check_same_inputs("dist.sample", **given)
    if not split:
        draws, stats, seconds, svi = run_sampler(spec, method, data, latent, k_run, checkpoint, checkpoint_every, resume, progress)
        return finish(spec, method, data, draws, stats, seconds, svi=svi, warn=warn)
    mine = share(method.chains)
    local_method = method
    if method.chain_method is None:
        n = len(mine)
        chosen = "sequential" if n == 1 else ("parallel" if jax.local_device_count() >= n else "vectorized")
        local_method = dataclasses.replace(method, chain_method=chosen)
    # a bar on the first process only (the others run the same number of iterations)
    draws, stats, seconds = NUTSRunner(spec, local_method).run(
        data, latent, k_run, chains=list(mine), progress=progress and jax.process_index() == 0
    )
    parts = gather_objects((draws, stats, seconds))
    draws = {k: np.concatenate([p[0][k] for p in parts], axis=0) for k in draws}
    stats = {k: np.concatenate([p[1][k] for p in parts], axis=0) for k in stats}
    return finish(spec, local_method, data, draws, stats, max(p[2] for p in parts), warn=warn)
