"""Runs across processes and machines on JAX's distributed runtime.

One process per machine (or per GPU) runs the same script. :func:`initialize` connects them
(from Slurm's environment, ``JAX_*`` variables or explicit arguments; a no-op for one process).
Batches of independent work — per-subject fits, NUTS chains, anything passed to :func:`map` — are
then split by process: each process runs its share on its own devices (where ``fit`` shards it
further), the results are gathered onto every process over JAX's collectives (gloo on CPU), and
:func:`write_once` lets process 0 alone write the output file, atomically.

Every function here is *collective* when more than one process runs: all processes must call it,
in the same order, with the same arguments (the same data, model and key).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import equinox as eqx
import jax
import numpy as np

from ._errors import DistributedError as DistributedError

T = TypeVar("T")

__all__ = [
    "DistributedError",
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
        timeout: seconds to wait for every process to connect.
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
    except (RuntimeError, ValueError) as e:  # JAX: computations already ran, the coordinator never answered, a bad address
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
    """
    items = list(items)
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
    """
    out = write() if is_main() else None
    barrier(name)
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

    Each subject's fit is independent of the others, so the gathered coefficients equal a one-process
    run's (to rounding) when ``restarts=1`` (restart 0 starts from the template, unjittered) and no
    ``patience`` is set. Two things are decided per process's batch: the restart jitter (drawn from
    ``key`` for the process's block, so with ``restarts > 1`` the jittered starts differ from a
    one-process run's) and early stopping (``patience`` stops a process when none of *its* subjects improve).

    Args:
        model: template model with one set of initial weights per trajectory of ``data``.
        data: every subject's data (the same on every process).
        key: PRNG key for restart jitter; every process must pass the same one.
        **kwargs: as for :func:`plasticinfer.fit_independent`.
    """
    from ._fit import FitResult, _as_trial_data, _check_data, check_model, fit_independent as _fit_independent, subject_labels

    processes = jax.process_count()
    if processes == 1:
        return unshard(_fit_independent(model, data, key=key, **kwargs))
    subjects = subject_labels(data)
    data = _as_trial_data(data, "data")
    if "validation" in kwargs:
        kwargs["validation"] = _as_trial_data(kwargs["validation"], "validation")
    n = data.n_trajectories
    check_model(model, "fit_independent")
    _check_data(model, data, "data")  # all of it, on every process, before any of them starts its share
    if n < processes:
        raise DistributedError(
            f"{n} subjects cannot be split over {processes} processes; run with at most {n} processes"
        )
    mine = share(n)
    sub_model, sub_data = _select_subjects(model, data, mine)
    validation = kwargs.pop("validation", None)
    if validation is not None:
        validation = _select_subjects(model, validation, mine)[1]
    kwargs.setdefault("devices", jax.local_devices())
    block_key = None if key is None else jax.random.fold_in(key, mine.start)
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
    )
    parts = gather_objects(part)
    leaves = [jax.device_put(np.concatenate([p["leaves"][i] for p in parts], axis=0)) for i in range(len(leaves))]
    model_all, restarts_all = eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)
    longest = max(parts, key=lambda p: p["val_steps"].size)
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
        subjects=subjects,
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
    """
    from ._fit import check_key
    from .bayes._sample import NUTS, NUTSRunner, _check_sampler_checkpoint, finish, prepare, run_sampler

    check_key(key, "sample")
    spec, method, data, latent = prepare(model, data, priors=priors, method=method, hierarchical=hierarchical, init=init)
    _check_sampler_checkpoint(method, checkpoint, checkpoint_every, resume)
    k_run, _ = jax.random.split(key)
    if not isinstance(method, NUTS) or jax.process_count() == 1:
        draws, stats, seconds, svi_loss = run_sampler(spec, method, data, latent, k_run, checkpoint, checkpoint_every, resume, progress)
        return finish(spec, method, data, draws, stats, seconds, svi_loss=svi_loss, warn=warn)
    if checkpoint is not None:
        raise DistributedError(
            f"checkpoint={str(checkpoint)!r}: NUTS checkpoints are not supported across {jax.process_count()} processes "
            "(each would write the same file); sample in one process to checkpoint, or pass checkpoint=None"
        )
    if method.chains < jax.process_count():
        raise DistributedError(
            f"NUTS(chains={method.chains}) cannot be split over {jax.process_count()} processes; "
            f"use at least {jax.process_count()} chains"
        )
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
