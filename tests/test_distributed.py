"""Runs across processes: a 2-process run on localhost equals the one-process run; the sampler survives sharded fits.

The multi-process and multi-device tests start fresh Python processes (JAX fixes its devices and
its distributed runtime at start-up); this file is also the script they run (``python
tests/test_distributed.py <mode> ...``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds any subprocess may run: a hung coordinator can never hang CI


# --------------------------------------------------------------------------------------
# What the subprocesses run
# --------------------------------------------------------------------------------------


def _problem():
    import jax
    import jax.numpy as jnp

    import plasticinfer as pi

    syn = pi.make_choice_data(
        pi.TaylorRule.from_terms({"x*r": 0.6, "w": -0.1}), key=jax.random.key(0), n_subjects=4, trials_per_block=15,
        inverse_temperature=2.0,
    )
    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*r": 0.0, "w": 0.0}), pi.ChoiceCircuit(2), pi.BernoulliChoice(2.0, learn_temperature=False),
        n_trajectories=4, initial_weights={"w": jnp.zeros((1, 2))},
    )
    return model, syn.data


def join(port: str, pid: str) -> None:
    """Join a 2-process run on localhost as process ``pid`` (in a worker, first thing), then turn on float64;
    a runtime that cannot start here is reported for the test to skip."""
    import jax

    import plasticinfer.distributed as dist

    try:
        dist.initialize(f"localhost:{port}", 2, int(pid), timeout=60)
    except dist.DistributedError as e:
        print(f"DISTRIBUTED-UNAVAILABLE: {e}", flush=True)
        raise
    jax.config.update("jax_enable_x64", True)


def _worker(mode: str, out: str, port: str | None = None, pid: str | None = None) -> None:
    """``single``: the one-process reference; ``multi``: one of two processes on localhost."""
    import plasticinfer.distributed as dist

    if mode == "multi":
        join(port, pid)
    import jax
    import optax

    jax.config.update("jax_enable_x64", True)
    import plasticinfer as pi

    out = Path(out)
    model, data = _problem()
    fit = dist.fit_independent(model, data, optimiser=optax.adam(0.05), steps=15, progress=False, fit_initial_weights=False)
    nuts = pi.bayes.NUTS(warmup=25, samples=20, chains=2, chain_method="sequential", max_tree_depth=4)
    post = dist.sample(model, data, key=jax.random.key(3), method=nuts, warn=False)
    squares = dist.map(lambda i: {"i": i, "sq": np.asarray(i) ** 2, "by": dist.process_index()}, range(5))
    coeffs = fit.coefficients
    gathered = dict(
        terms=np.asarray(list(coeffs.columns)),
        coefficients=coeffs.to_numpy(),
        loss=fit.loss_history,
        theta=post.draws("theta"),
        squares=np.asarray([s["sq"] for s in squares]),
        by=np.asarray([s["by"] for s in squares]),
        n_processes=np.asarray(dist.process_count()),
    )
    np.savez(out / f"gathered_{mode}_{dist.process_index()}.npz", **gathered)
    wrote = dist.write_once(lambda: fit.save(out / f"fit_{mode}.nc"))
    (out / f"wrote_{mode}_{dist.process_index()}.json").write_text(json.dumps(wrote is not None or dist.is_main()))


def _sharded_sample_worker(out: str) -> None:
    """The crash of issue #16 item 3: sample from a fit whose restarts were sharded over two devices."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import optax

    import plasticinfer as pi

    assert jax.device_count() == 2, jax.devices()
    model, data = _problem()
    res = pi.fit(model, data, optimiser=optax.adam(0.05), steps=5, restarts=2, key=jax.random.key(1), progress=False,
                 fit_initial_weights=False)
    # However fit lays out its result, a model on the 2-device 'batch' mesh is what crashed NumPyro's pmap.
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    on_mesh = jax.tree_util.tree_map(lambda a: jax.device_put(a, NamedSharding(mesh, P())) if eqx.is_array(a) else a, res.model)
    plain = jax.tree_util.tree_map(lambda a: jax.numpy.asarray(np.asarray(a)) if eqx.is_array(a) else a, res.model)
    nuts = pi.bayes.NUTS(warmup=20, samples=10, chains=2, max_tree_depth=4)
    assert nuts.resolved_chain_method() == "parallel"
    kw = dict(key=jax.random.key(2), method=nuts, warn=False)
    from_fit = pi.bayes.sample(res.model, data, **kw)
    from_mesh = pi.bayes.sample(on_mesh, data, **kw)
    reference = pi.bayes.sample(plain, data, **kw)
    np.savez(
        Path(out) / "sharded.npz",
        fit=from_fit.draws("theta"), mesh=from_mesh.draws("theta"),
        reference=reference.draws("theta"), mesh_sharding=np.asarray(isinstance(on_mesh.rule.coeffs.sharding, NamedSharding)),
    )


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _env(cache: Path, **extra) -> dict:
    """The subprocesses' environment: this checkout first, and one compilation cache per test.

    NUTS takes most of a worker's time to compile; with the cache the later processes of a test
    load what the first compiled (same programs, so the same results) instead of compiling again.
    """
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if "XLA_FLAGS" not in extra:
        env.pop("XLA_FLAGS", None)
    env.update(
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID", "SLURM_PROCID"):
        env.pop(name, None)
    return env


def _run(args, env, tmp_path):
    proc = subprocess.run([sys.executable, __file__, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def run_two_processes(script: str, args: list[str], env: dict, cwd: Path) -> None:
    """Run ``script args PORT PID`` as processes 0 and 1 of one distributed run on localhost; each must exit 0
    (the test is skipped where JAX's distributed runtime cannot start)."""
    port = str(_free_port())
    procs = [
        subprocess.Popen([sys.executable, script, *args, port, str(pid)], env=env, cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for pid in (0, 1)
    ]  # fmt: skip
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    if any("DISTRIBUTED-UNAVAILABLE" in o for o, _ in outputs) and all(p.returncode for p in procs):
        pytest.skip(f"JAX's distributed runtime cannot start here: {outputs[0][0][-500:]}")
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_two_processes_on_localhost_equal_one_process(tmp_path):
    env = _env(tmp_path / "cache")
    _run(["single", str(tmp_path)], env, tmp_path)
    run_two_processes(__file__, ["multi", str(tmp_path)], env, tmp_path)

    ref = np.load(tmp_path / "gathered_single_0.npz")
    assert int(ref["n_processes"]) == 1
    for pid in (0, 1):
        got = np.load(tmp_path / f"gathered_multi_{pid}.npz")
        assert int(got["n_processes"]) == 2
        # Every process holds every subject's fit, with the same terms, equal to the one-process fit.
        assert got["terms"].tolist() == ref["terms"].tolist()
        assert got["coefficients"].shape == (4, len(ref["terms"]))
        np.testing.assert_allclose(got["coefficients"], ref["coefficients"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(got["loss"], ref["loss"], rtol=0, atol=1e-10)
        # Chain c ran on process c with the key it has in the one-process run: identical draws.
        assert got["theta"].shape == ref["theta"].shape
        np.testing.assert_array_equal(got["theta"], ref["theta"])
        # map: results in item order, items 0-2 on process 0 and 3-4 on process 1.
        np.testing.assert_array_equal(got["squares"], np.arange(5) ** 2)
        np.testing.assert_array_equal(got["by"], [0, 0, 0, 1, 1])
    assert (ref["coefficients"][:, list(ref["terms"]).index("x*r")] > 0).all()  # the fits did move
    # Written once, by process 0; the file holds every subject.
    assert json.loads((tmp_path / "wrote_multi_0.json").read_text()) is True
    assert json.loads((tmp_path / "wrote_multi_1.json").read_text()) is False
    import xarray as xr

    with xr.open_dataset(tmp_path / "fit_multi.nc", engine="h5netcdf") as ds:
        np.testing.assert_allclose(ds["coefficient"].values, ref["coefficients"], rtol=0, atol=1e-10)
    assert not list(tmp_path.glob(".fit_multi.nc.*"))  # no temporary file left behind


@pytest.mark.slow
def test_sample_after_fit_sharded_over_two_devices(tmp_path):
    """Issue #16 item 3: bayes.sample crashed with 'Context mesh ... should match the mesh of sharding'."""
    _run(["sharded", str(tmp_path)], _env(tmp_path / "cache", XLA_FLAGS="--xla_force_host_platform_device_count=2"), tmp_path)
    got = np.load(tmp_path / "sharded.npz")
    assert bool(got["mesh_sharding"])  # the model handed to the sampler really was on the mesh
    for name in ("fit", "mesh"):
        np.testing.assert_array_equal(got[name], got["reference"])  # and sampled as if it never had been
    assert np.isfinite(got["reference"]).all()


@pytest.mark.slow
def test_tutorial_08_runs_one_and_two_processes(tmp_path):
    from helpers import run_tutorial

    stdout = run_tutorial("08_distributed_fits.py", tmp_path)
    assert "2 process(es) fitted 4 animals" in stdout
    assert "fused:" in stdout and "largest relative difference of the coefficient gradients" in stdout  # section 4 ran
    for name in ("fits_1_process.nc", "fits_2_processes.nc"):
        assert (tmp_path / name).exists(), name


def test_share_splits_items_into_contiguous_balanced_blocks():
    from plasticinfer.distributed import share

    for n in (0, 1, 5, 16, 17):
        for processes in (1, 2, 3, 4):
            blocks = [share(n, process=p, processes=processes) for p in range(processes)]
            assert [i for b in blocks for i in b] == list(range(n))
            sizes = [len(b) for b in blocks]
            assert max(sizes) - min(sizes) <= 1


def test_one_process_helpers_are_identities(tmp_path, monkeypatch):
    import plasticinfer.distributed as dist

    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert dist.initialize() == 1
    assert dist.process_count() == 1 and dist.process_index() == 0 and dist.is_main()
    assert dist.map(lambda x: x + 1, [1, 2, 3]) == [2, 3, 4]
    assert dist.gather_objects({"a": 1}) == [{"a": 1}]
    assert dist.write_once(lambda: (tmp_path / "f").write_text("x")) == 1


def test_unshard_moves_mesh_arrays_to_one_device_and_keeps_values():
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P, SingleDeviceSharding

    import plasticinfer as pi
    from plasticinfer.distributed import unshard

    mesh = Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    a = jax.device_put(jnp.arange(4.0), NamedSharding(mesh, P("batch")))
    b = jnp.ones(3)
    out = unshard({"a": a, "b": b, "n": 3})
    assert isinstance(out["a"].sharding, SingleDeviceSharding)
    np.testing.assert_array_equal(np.asarray(out["a"]), np.arange(4.0))
    assert out["b"] is b and out["n"] == 3  # single-device arrays and non-arrays untouched
    result = pi.FitResult(
        model={"w": a}, restarts={"w": a[None]}, loss_history=np.zeros((1, 2)), validation_history=None,
        validation_steps=np.zeros(0), best_restart=np.asarray(0), diverged_at=np.asarray([-1]), stopped_early=False, steps_run=2,
    )
    fixed = unshard(result)
    assert isinstance(fixed, pi.FitResult)
    assert isinstance(fixed.model["w"].sharding, SingleDeviceSharding)
    assert isinstance(fixed.restarts["w"].sharding, SingleDeviceSharding)


def test_initialize_names_what_is_missing(monkeypatch):
    import plasticinfer.distributed as dist
    from plasticinfer import PlasticInferError

    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(dist.DistributedError, match="coordinator_address"):
        dist.initialize(num_processes=2, process_id=0)
    with pytest.raises(dist.DistributedError, match="process_id must be in 0"):
        dist.initialize("localhost:1234", 2, 5)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(dist.DistributedError, match="JAX_NUM_PROCESSES"):
        dist.initialize()
    assert issubclass(dist.DistributedError, PlasticInferError)


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "sharded":
        _sharded_sample_worker(*rest)
    else:
        _worker(mode, *rest)
