"""NUTS checkpoints: chunked = unchunked and interrupted + resumed = uninterrupted, bit for bit; bad checkpoints refused."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import interrupt_nuts_chunk

import plasticinfer as pi
from plasticinfer import bayes
from plasticinfer.bayes._nuts import NUTSRunner
from plasticinfer.errors import InterruptedWarning

NUTS = bayes.NUTS(warmup=12, samples=8, chains=2, max_tree_depth=4)


@pytest.fixture(scope="module")
def problem():
    return _problem()


def _problem():
    """A 2×3 layer's initial weights under Gaussian noise: six sampled scalars, quick to compile."""
    k_x, k_w, k_n = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(k_x, (1, 12, 3))
    y = x @ jax.random.normal(k_w, (2, 3)).T + 0.3 * jax.random.normal(k_n, (1, 12, 2))
    data = pi.TrialData({"x": x}, y, jnp.ones_like(y, bool))
    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*y": 0.0}, fixed=["x*y"]), pi.FeedForward(3, 2), pi.GaussianActivity(0.3, learn_sigma=False),
        initial_weights={"w": jnp.zeros((2, 3))},
    )  # fmt: skip
    priors = bayes.Priors(initial_weights=bayes.Normal(1.0), observation=None)
    return model, data, priors


def _sample(problem, method=NUTS, key=0, **kw):
    model, data, priors = problem
    return bayes.sample(model, data, key=jax.random.key(key), priors=priors, method=method, warn=False, **kw)


def _assert_identical(a, b):
    for name in ("initial_w",):
        np.testing.assert_array_equal(a.draws(name), b.draws(name))
    for stat in ("lp", "step_size", "n_steps", "diverging", "acceptance_rate"):
        np.testing.assert_array_equal(a.idata.sample_stats[stat].values, b.idata.sample_stats[stat].values)


@pytest.fixture(scope="module")
def reference(problem):
    """The uninterrupted, unchunked run: one compiled scan over all 20 iterations of both chains."""
    return _sample(problem)


@pytest.mark.slow  # four NUTS compilations, ~60 s on 2 shared cores
@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_chunked_and_resumed_runs_equal_the_uninterrupted_run(problem, tmp_path, monkeypatch, chain_method):
    method = dataclasses.replace(NUTS, chain_method=chain_method)
    reference = _sample(problem, method)  # here, not the module's fixture: slow tests compile with other XLA settings
    ck = tmp_path / "nuts.ckpt"
    # chunks of 5 iterations, the third of which spans the end of warmup (12): the same draws bit for bit
    _assert_identical(_sample(problem, method, checkpoint=ck, checkpoint_every=5), reference)

    # a Ctrl-C during the third chunk keeps the first two (10 iterations: still in warmup) and says how to resume
    ck.unlink()
    interrupt_nuts_chunk(monkeypatch, 2)
    warned = pytest.warns(InterruptedWarning, match=rf"after 10 of 20 iterations.*{ck.name}.*resume=True")
    with warned, pytest.raises(KeyboardInterrupt):
        _sample(problem, method, checkpoint=ck, checkpoint_every=5)
    monkeypatch.undo()
    assert ck.is_file()
    resumed = _sample(problem, method, checkpoint=ck, checkpoint_every=5, resume=True)
    _assert_identical(resumed, reference)

    # a finished checkpoint resumes without sampling again
    calls = interrupt_nuts_chunk(monkeypatch, 0)
    _assert_identical(_sample(problem, method, checkpoint=ck, checkpoint_every=5, resume=True), reference)
    assert not calls


_PARALLEL = """
import sys, warnings
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, {tests!r})
import test_bayes_resume as t
import pytest
from helpers import interrupt_nuts_chunk
problem = t._problem()
assert jax.local_device_count() == 2 and t.NUTS.resolved_chain_method() == "parallel"
reference = t._sample(problem)
patch = pytest.MonkeyPatch()
interrupt_nuts_chunk(patch, 2)
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t._sample(problem, checkpoint={ck!r}, checkpoint_every=5)
    raise SystemExit("not interrupted")
except KeyboardInterrupt:
    pass
patch.undo()
t._assert_identical(t._sample(problem, checkpoint={ck!r}, checkpoint_every=5, resume=True), reference)
print("identical")
"""


@pytest.mark.slow  # a fresh process with two host devices: ~40 s
def test_parallel_chains_resume_bit_identically(tmp_path):
    """``chain_method="parallel"`` (pmap, one chain per device) needs two devices from JAX's start: a subprocess."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = _PARALLEL.format(tests=str(Path(__file__).parent), ck=str(tmp_path / "nuts.ckpt"))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0 and "identical" in res.stdout, res.stderr[-3000:]


def test_resume_in_sampling_phase_with_other_chunking(problem, reference, tmp_path, monkeypatch):
    """Interrupted in the draws (after 14 of 20), resumed with chunks of 3: still the uninterrupted draws."""
    ck = tmp_path / "nuts.ckpt"
    interrupt_nuts_chunk(monkeypatch, 2)
    with pytest.warns(InterruptedWarning, match="after 14 of 20"), pytest.raises(KeyboardInterrupt):
        _sample(problem, checkpoint=ck, checkpoint_every=7)
    monkeypatch.undo()
    _assert_identical(_sample(problem, checkpoint=ck, checkpoint_every=3, resume=True), reference)


def test_progress_bar_runs_in_chunks_with_the_uninterrupted_draws(problem, reference, monkeypatch, capsys):
    """``progress=True`` where a bar is drawn (forced here: pytest's stderr is not a terminal): the run is
    cut into chunks of ⌈20/20⌉ = 1 iteration for the bar, which names the run, and the draws are the
    unchunked run's. Where no bar is drawn, nothing is chunked (one program over all 20 iterations)."""
    import plasticinfer.bayes._nuts as nuts

    lengths = []
    original = NUTSRunner._advance_fn

    def spy(self, length):
        lengths.append(length)
        return original(self, length)

    monkeypatch.setattr(NUTSRunner, "_advance_fn", spy)
    _assert_identical(_sample(problem, progress=True), reference)  # pytest's stderr: no bar, no chunks
    assert lengths == [20] and "NUTS (" not in capsys.readouterr().err
    monkeypatch.setattr(nuts, "show_progress", lambda progress: bool(progress))
    _assert_identical(_sample(problem, progress=True), reference)
    assert lengths == [20, 1]
    assert "NUTS (2 chains, 12 warmup + 8 draws)" in capsys.readouterr().err
    _sample(problem, progress=False)
    assert lengths == [20, 1, 20] and "NUTS (" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_checkpoint(problem, tmp_path_factory):
    ck = tmp_path_factory.mktemp("nuts") / "nuts.ckpt"
    _sample(problem, checkpoint=ck, checkpoint_every=20)
    return ck


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"key": 1}, id="key"),
        pytest.param({"method": bayes.NUTS(warmup=12, samples=8, chains=2, max_tree_depth=4, target_accept=0.9)}, id="settings"),
        pytest.param({"data": True}, id="data"),
        pytest.param({"priors": bayes.Priors(initial_weights=bayes.Normal(2.0), observation=None)}, id="priors"),
    ],
)
def test_checkpoint_of_another_run_is_refused(problem, finished_checkpoint, change, tmp_path):
    ck = tmp_path / "other.ckpt"
    ck.write_bytes(finished_checkpoint.read_bytes())
    before = ck.read_bytes()
    model, data, priors = problem
    change = dict(change)
    if change.pop("data", False):
        data = pi.TrialData(data.inputs, data.observations.at[0, 0, 0].add(1.0), data.mask)
    priors = change.pop("priors", priors)
    with pytest.raises(pi.DataError, match=r"other\.ckpt: this checkpoint belongs to a different NUTS run"):
        _sample((model, data, priors), checkpoint=ck, resume=True, **change)
    assert ck.read_bytes() == before  # nothing overwritten


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated", "cannot read as a plasticinfer checkpoint"),
        ("text", "cannot read as a plasticinfer checkpoint"),
        ("incomplete", "checkpoint is incomplete"),
        ("iterations", "checkpoint holds an inconsistent number of iterations"),
    ],
)
def test_corrupt_checkpoint_is_refused_and_kept(problem, finished_checkpoint, damage, message, tmp_path):
    ck = tmp_path / "bad.ckpt"
    good = finished_checkpoint.read_bytes()
    if damage in ("truncated", "text"):
        ck.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"not a checkpoint\n")
    else:  # the right header (fingerprint) over damaged contents
        with np.load(finished_checkpoint) as z:
            arrays = {k: z[k] for k in z.files}
        if damage == "incomplete":
            del arrays["z/0"]
        else:
            arrays["stats/0"] = arrays["stats/0"][:, :-1]
        with open(ck, "wb") as f:
            np.savez(f, **arrays)
    before = ck.read_bytes()
    with pytest.raises(pi.DataError, match=rf"bad\.ckpt: {message}.*delete it"):
        _sample(problem, checkpoint=ck, resume=True)
    assert ck.read_bytes() == before


def test_checkpoint_options_are_checked(problem, tmp_path):
    with pytest.raises(pi.ModelError, match="resume=True needs checkpoint=PATH"):
        _sample(problem, resume=True)
    with pytest.raises(pi.ModelError, match="checkpoint_every must be ≥ 1"):
        _sample(problem, checkpoint=tmp_path / "c", checkpoint_every=0)
    with pytest.raises(pi.ModelError, match="NUTS"):
        _sample(problem, method=bayes.SVI(steps=5), checkpoint=tmp_path / "c")
    assert not (tmp_path / "c").exists()
    with pytest.raises(pi.DataError, match="nowhere.*does not exist. Create it"):  # at once, not after the first chunk
        _sample(problem, checkpoint=tmp_path / "nowhere" / "c")
    with pytest.raises(pi.DataError, match="is a folder; give a file name"):
        _sample(problem, checkpoint=tmp_path)


def test_distributed_checkpoint_is_refused_across_processes(problem, tmp_path, monkeypatch):
    """Several processes would write one checkpoint file: refused, before any sampling, with the way out."""
    from plasticinfer import distributed as dist

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    model, data, priors = problem
    with pytest.raises(dist.DistributedError, match=r"nuts\.ckpt.*not supported across 2 processes.*one process"):
        dist.sample(model, data, key=jax.random.key(0), priors=priors, method=NUTS, checkpoint=tmp_path / "nuts.ckpt")
    assert not (tmp_path / "nuts.ckpt").exists()


def test_one_runner_starts_each_run_where_it_is_told(problem):
    """A runner compiles once and is reused (calibration); each run must still start at its own warm start.

    One iteration of no warmup and a depth-1 tree from two starts 3 apart, same key: the draws differ by
    about those 3 (before, the compiled sampler kept the first run's start and gave identical draws)."""
    from plasticinfer.bayes._numpyro_model import ModelSpec

    model, data, priors = problem
    spec = ModelSpec(model, priors)
    runner = NUTSRunner(spec, bayes.NUTS(warmup=0, samples=1, chains=1, max_tree_depth=1, init_jitter=0.0))
    near = spec.latent_init(model)
    far = {k: v + 3.0 for k, v in near.items()}
    key = jax.random.key(0)
    a, _, _ = runner.run(data, near, key)
    b, _, _ = runner.run(data, far, key)
    again, _, _ = runner.run(data, near, key)
    np.testing.assert_array_equal(again["initial_w"], a["initial_w"])
    assert np.abs(b["initial_w"] - a["initial_w"]).mean() > 1.0


def test_counted_ctrl_c_stops_after_the_chunk_and_keeps_it(problem, tmp_path, monkeypatch):
    """On the command line a Ctrl-C can be swallowed inside JAX; the counted one stops the run after the chunk."""
    import json

    from plasticinfer import _interrupt

    monkeypatch.setattr(_interrupt, "count", lambda: 1)
    ck = tmp_path / "nuts.ckpt"
    with pytest.warns(InterruptedWarning, match="after 7 of 20"), pytest.raises(KeyboardInterrupt):
        _sample(problem, checkpoint=ck, checkpoint_every=7)
    with np.load(ck) as z:
        assert json.loads(bytes(z["__header__"]).decode())["done"] == 7
        assert z["stats/0"].shape == (2, 7)  # both chains' first 7 iterations
