"""Throughput of a batch of independent per-subject fits: 1 process vs N processes on this machine.

Fits ``--subjects`` synthetic flies (two-odour choice task, 3 blocks × ``--trials`` trials, rule
x·r and decay w; Adam(0.05), ``--steps`` steps) with ``plasticinfer.distributed.fit_independent``:

* 1 process, 1 device (the baseline);
* 1 process, N host devices (``fit`` shards the subject batch across devices within the process);
* N processes on localhost, one device each (JAX's distributed runtime, gloo collectives);
* the peer that bounds what splitting by process can gain here: N processes started together, each
  fitting its share alone, without the runtime or gathering (time: the slower one).

Every configuration runs in this script, one after the other. For each, the figure is the wall time
of the timed fit (after a warm-up fit of the same shapes has compiled everything), from a barrier
before it to the gathered result on every process — so gathering is included, start-up and
compilation are not; the start-to-end wall time of the whole run is printed as well. Each process
pins XLA to one thread per device, so N processes/devices use at most N cores.

    python benchmarks/bench_distributed.py                 # 16 subjects, N = 2
    python benchmarks/bench_distributed.py --processes 4   # on a machine with ≥ 4 free cores
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    import plasticinfer.distributed as dist

    if args.processes > 1 and not args.uncoordinated:
        dist.initialize(f"localhost:{args.port}", args.processes, args.process_id, timeout=120)
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)
    import plasticinfer as pi

    syn = pi.make_choice_data(
        pi.TaylorRule.from_terms({"x*r": 0.6, "w": -0.1}), key=jax.random.key(0), n_subjects=args.subjects,
        trials_per_block=args.trials, inverse_temperature=2.0,
    )
    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*r": 0.0, "w": 0.0}), pi.ChoiceCircuit(2), pi.BernoulliChoice(2.0, learn_temperature=False),
        n_trajectories=args.subjects, initial_weights={"w": jnp.zeros((1, 2))},
    )
    data = syn.data
    if args.uncoordinated:  # the peer: this process fits its half alone, no runtime, no gathering
        index = list(dist.share(args.subjects, process=args.process_id, processes=args.processes))
        model, data = dist._select_subjects(model, data, index)
    kw = dict(optimiser=optax.adam(0.05), progress=False, fit_initial_weights=False, eval_every=25)
    dist.fit_independent(model, data, steps=25, **kw)  # compile
    dist.barrier("bench-start")
    t0 = time.perf_counter()
    result = dist.fit_independent(model, data, steps=args.steps, **kw)
    seconds = time.perf_counter() - t0
    if args.uncoordinated:
        print(json.dumps({"seconds": seconds, "coefficients": None, "terms": None}), flush=True)
    elif dist.is_main():
        coeffs = result.coefficients.to_numpy()
        print(json.dumps({"seconds": seconds, "coefficients": coeffs.tolist(), "terms": list(result.coefficients.columns)}), flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # One XLA thread per device, so N devices or processes use at most N cores.
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} --xla_cpu_multi_thread_eigen=false"
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID", "SLURM_PROCID"):
        env.pop(name, None)
    return env


def launch(args, processes: int, devices: int, uncoordinated: bool = False) -> tuple[dict, float]:
    port = str(_free_port())
    common = [sys.executable, __file__, "--worker", "--subjects", str(args.subjects), "--trials", str(args.trials),
              "--steps", str(args.steps), "--processes", str(processes), "--port", port]
    common += ["--uncoordinated"] if uncoordinated else []
    t0 = time.perf_counter()
    procs = [subprocess.Popen(common + ["--process-id", str(p)], env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in range(processes)]
    try:
        outs = [p.communicate(timeout=args.timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    wall = time.perf_counter() - t0
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"worker failed:\n{err[-2000:]}")
    results = [json.loads([l for l in out.splitlines() if l.startswith("{")][-1]) for out, _ in outs if "{" in out]
    if uncoordinated:  # done when the slower half is done
        return {"seconds": max(r["seconds"] for r in results), "coefficients": None}, wall
    return results[0], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=16)
    parser.add_argument("--trials", type=int, default=80, help="trials per block (3 blocks)")
    parser.add_argument("--steps", type=int, default=200, help="Adam steps of the timed fit")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--uncoordinated", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    n = args.processes
    print(f"{args.subjects} independent fits, {3 * args.trials} trials each, {args.steps} Adam steps; "
          f"{os.cpu_count()} CPU cores on this machine (load average {os.getloadavg()[0]:.1f})")
    rows = []
    configs = [("1 process × 1 device", 1, 1, False), (f"1 process × {n} devices", 1, n, False),
               (f"{n} processes × 1 device", n, 1, False), (f"{n} uncoordinated halves", n, 1, True)]
    for label, processes, devices, uncoordinated in configs:
        out, wall = launch(args, processes, devices, uncoordinated)
        rows.append((label, out, wall))
    base = rows[0][1]["seconds"]
    reference = np.asarray(rows[0][1]["coefficients"])
    terms = rows[0][1]["terms"]
    print(f"{'configuration':<26}{'fit s':>8}{'fits/s':>9}{'vs 1 proc':>11}{'run wall s':>12}  max |Δcoef| vs 1 proc")
    for label, out, wall in rows:
        diff = "—" if out["coefficients"] is None else f"{np.abs(np.asarray(out['coefficients']) - reference).max():.1e}"
        print(f"{label:<26}{out['seconds']:>8.2f}{args.subjects / out['seconds']:>9.2f}{base / out['seconds']:>10.2f}×{wall:>12.1f}  {diff}")
    means = reference.mean(axis=0)
    print("mean fitted coefficients: " + ", ".join(f"{t} = {m:.3f}" for t, m in zip(terms, means)) + "  (truth x*r = 0.6, w = -0.1)")


if __name__ == "__main__":
    main()
