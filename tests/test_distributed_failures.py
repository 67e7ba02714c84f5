"""Runs across processes that go wrong: the verdict on convergence, processes given different inputs, a failed write.

One 2-process run on localhost (started once per module, ~1 min) exercises all of it; the tests check
what each process recorded. Like ``test_distributed.py`` this file is also the script the processes run
(``python tests/test_distributed_failures.py <out> <port> <pid>``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from test_distributed import _env, join, run_two_processes


# --------------------------------------------------------------------------------------
# What the subprocesses run
# --------------------------------------------------------------------------------------


def _outcome(call) -> dict:
    """What ``call()`` did: its value, or the class and message of what it raised."""
    try:
        return {"value": call(), "error": None, "message": ""}
    except Exception as e:  # noqa: BLE001 - recorded for the test to judge
        return {"value": None, "error": type(e).__name__, "message": str(e)}


def _worker(out: str, port: str, pid: str) -> None:
    import warnings

    import plasticinfer.distributed as dist

    join(port, pid)
    import jax
    import jax.numpy as jnp

    import plasticinfer as pi
    from plasticinfer.errors import ConvergenceWarning

    out = Path(out)
    me = dist.process_index()
    n = 5

    def problem(seed):
        syn = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.6, "w": -0.1}), key=jax.random.key(seed), n_subjects=n,
                                  trials_per_block=20, inverse_temperature=2.0)
        model = pi.PlasticityModel.create(
            pi.TaylorRule.from_terms({"x*r": 0.0, "w": 0.0}), pi.ChoiceCircuit(2), pi.BernoulliChoice(2.0, learn_temperature=False),
            n_trajectories=n, initial_weights={"w": jnp.zeros((1, 2))},
        )
        return model, syn.data

    record = {}
    model, data = problem(0)
    kw = dict(steps=15, progress=False, fit_initial_weights=False)  # too few steps for some subjects to settle

    # 1. The verdict on convergence, with the same inputs everywhere, against the one-process function on all subjects.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = dist.fit_independent(model, data, **kw)
    with warnings.catch_warnings(record=True) as caught_ref:
        warnings.simplefilter("always")
        ref = pi.fit_independent(model, data, **kw)
    record["converged"] = bool(fit.converged)
    record["message"] = fit.convergence_message
    record["interrupted"] = bool(fit.interrupted)
    record["ref_converged"] = bool(ref.converged)
    record["ref_message"] = ref.convergence_message
    record["ref_interrupted"] = bool(ref.interrupted)
    record["warnings"] = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    record["ref_warnings"] = [str(w.message) for w in caught_ref if issubclass(w.category, ConvergenceWarning)]
    record["same_items"] = _outcome(lambda: dist.map(lambda i: i * i, list(range(4))))

    # 2. Process 1 loads other data / passes another key / maps other items: refused everywhere, nothing mixed.
    _, other_data = problem(1 if me == 1 else 0)
    record["different_data"] = _outcome(lambda: dist.fit_independent(model, other_data, **kw).converged)
    nuts = pi.bayes.NUTS(warmup=5, samples=5, chains=2, max_tree_depth=2)
    record["different_key"] = _outcome(
        lambda: dist.sample(model, data, key=jax.random.key(me), method=nuts, warn=False, progress=False) is not None
    )
    record["different_items"] = _outcome(lambda: dist.map(lambda i: i, list(range(4 + me))))

    # 3. write_once whose writer fails on process 0 (a missing folder), then one that succeeds.
    import numpy as np
    import xarray as xr

    ds = xr.Dataset({"x": ("t", np.arange(3.0))})
    record["failed_write"] = _outcome(lambda: str(dist.write_once(lambda: pi.data.write_netcdf(ds, out / "no_such_folder" / "x.nc"))))
    record["good_write"] = _outcome(lambda: str(dist.write_once(lambda: pi.data.write_netcdf(ds, out / "x.nc"))))
    record["good_write_exists"] = (out / "x.nc").exists()

    (out / f"record_{me}.json").write_text(json.dumps(record))


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Each process's record of one 2-process run (skips where JAX's distributed runtime cannot start)."""
    tmp_path = tmp_path_factory.mktemp("dist_failures")
    run_two_processes(__file__, [str(tmp_path)], _env(tmp_path / "cache"), tmp_path)
    return [json.loads((tmp_path / f"record_{pid}.json").read_text()) for pid in (0, 1)]


@pytest.mark.slow
def test_two_processes_give_the_one_process_verdict_on_convergence(records):
    for rec in records:
        # The premise: in 15 steps some subjects do not settle, and the one-process run says which.
        assert rec["ref_converged"] is False
        assert " of 5 subjects not converged; subject " in rec["ref_message"]
        # The gathered result says the same, word for word, and warns once with it.
        assert rec["converged"] is rec["ref_converged"]
        assert rec["message"] == rec["ref_message"]
        assert rec["interrupted"] is rec["ref_interrupted"] is False
        assert rec["warnings"] == rec["ref_warnings"] == [rec["ref_message"]]
        # Same inputs everywhere: nothing refused.
        assert rec["same_items"] == {"value": [0, 1, 4, 9], "error": None, "message": ""}


@pytest.mark.slow
def test_a_process_given_different_inputs_is_refused_on_every_process(records):
    for rec in records:
        for case, name in [("different_data", "data"), ("different_key", "key"), ("different_items", "items")]:
            got = rec[case]
            assert got["error"] == "DistributedError", (case, got)
            assert got["value"] is None
            assert f"{name} differs from process 0's on process(es) 1" in got["message"], (case, got["message"])
            assert "Every process must load the same data, build the same model" in got["message"]
        assert "dist.fit_independent" in rec["different_data"]["message"]
        assert "model differs" not in rec["different_data"]["message"]  # only what differs is named
        assert "dist.sample" in rec["different_key"]["message"]
        assert "dist.map" in rec["different_items"]["message"]


@pytest.mark.slow
def test_write_once_failure_on_process_0_is_reported_on_every_process(records):
    writer, other = records
    # Process 0 re-raises its own error; process 1 is told process 0 failed, and why, at once.
    assert writer["failed_write"]["error"] not in (None, "DistributedError", "JaxRuntimeError"), writer["failed_write"]
    assert other["failed_write"]["error"] == "DistributedError", other["failed_write"]
    assert "process 0 failed to write" in other["failed_write"]["message"]
    assert f"{writer['failed_write']['error']}: {writer['failed_write']['message']}" in other["failed_write"]["message"]
    # The processes are still in step afterwards: the next write works and is seen by both.
    assert writer["good_write"]["error"] is None and writer["good_write"]["value"].endswith("x.nc")
    assert other["good_write"] == {"value": "None", "error": None, "message": ""}
    assert writer["good_write_exists"] and other["good_write_exists"]


def test_fingerprint_tells_apart_values_shapes_dtypes_and_keys():
    import jax
    import numpy as np

    from plasticinfer.distributed import fingerprint

    a = np.arange(6.0)
    assert fingerprint({"x": a}) == fingerprint({"x": a.copy()})
    for other in ({"x": a + 1e-12}, {"x": a.reshape(2, 3)}, {"x": a.astype(np.float32)}, {"y": a}, {"x": a, "z": 0}):
        assert fingerprint(other) != fingerprint({"x": a}), other
    assert fingerprint(jax.random.key(0)) == fingerprint(jax.random.key(0)) != fingerprint(jax.random.key(1))
    assert fingerprint(lambda: 1) == fingerprint(lambda: 2)  # functions count by type only (their address differs by process)


def test_check_same_inputs_does_nothing_in_one_process():
    from plasticinfer.distributed import check_same_inputs

    assert check_same_inputs("anything", data=object(), key=None) is None


if __name__ == "__main__":
    _worker(*sys.argv[1:])
