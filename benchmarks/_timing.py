"""Timing helper shared by the benchmark scripts (run as ``python benchmarks/bench_x.py``, so this folder is on the path)."""

import time

import jax
import numpy as np


def timed(fn, *args, repeat=5):
    """Median and min over ``repeat`` calls (after one compiling call): wall and process CPU seconds.

    Process CPU time counts every thread of this process; on a shared machine it moves much less
    than wall time.
    """
    jax.block_until_ready(fn(*args))
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return dict(median=float(np.median(wall)), min=min(wall), cpu_median=float(np.median(cpu)), cpu_min=min(cpu))
