"""The suite's own settings (tests/conftest.py) reach every test process, xdist workers included.

Slow tests are long runs of few programs and compile fully optimised (unless also marked compile_bound); the
fast tier compiles with JAX's "most optimisations off". Under ``pytest -n 2`` the workers inherit the controller's
JAX_DISABLE_MOST_OPTIMIZATIONS=1 and once took it for the user's choice, so every slow test ran
unoptimised (the CLI fit test: 159 s instead of 28). These tests run the suite's conftest in a pytest of
their own, with and without xdist workers.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

INNER = '''
import os
import jax
import pytest

EXPECT = os.environ.get("INNER_EXPECT")  # "suite": slow optimised, fast not; "0"/"1": the user's value everywhere


def _check(slow):
    value = jax.config.values["jax_disable_most_optimizations"]
    want = (not slow) if EXPECT == "suite" else EXPECT == "1"
    assert value is want, (value, want)
    assert os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] == ("1" if want else "0")  # what a subprocess would get


@pytest.mark.slow
def test_slow():
    _check(True)


def test_fast():
    _check(False)
'''

INNER_COMPILE_BOUND = '''
import pytest
from test_inner import _check


@pytest.mark.slow
@pytest.mark.compile_bound
def test_slow_compile_bound():
    _check(False)  # the suite's choice: unoptimised, as the fast tier
'''


def _inner_run(tmp_path, workers, expect, user_value=None, options=("--slow",), summary="2 passed"):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "test_inner_compile_bound.py").write_text(INNER_COMPILE_BOUND)
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_DISABLE_MOST_OPTIMIZATIONS", "PLASTICINFER_TEST_SUITE_SET_OPTIMISATION")}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    env["INNER_EXPECT"] = expect
    if user_value is not None:
        env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = user_value
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestUnknownMarkWarning"]
    args += ["-n", str(workers)] if workers else []
    proc = subprocess.run(args + list(options), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and summary in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("workers", [0, 2])
def test_slow_tests_compile_optimised_and_fast_tests_not(tmp_path, workers):
    _inner_run(tmp_path, workers, "suite", options=("--slow", "test_inner.py", "test_inner_compile_bound.py"), summary="3 passed")


def test_the_users_choice_applies_to_every_test_in_every_worker(tmp_path):
    _inner_run(tmp_path, 2, "0", user_value="0", options=("--slow", "test_inner.py", "test_inner_compile_bound.py"), summary="3 passed")


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # xdist: 5 s each, in the whole suite
@pytest.mark.parametrize(
    ("options", "summary"),
    [
        ((), "1 passed"),  # the default tier is the fast one, and says what it left out
        (("--slow",), "2 passed"),
        (("-m", "slow"), "1 passed"),  # a marker expression of the user's decides alone
        (("test_inner.py::test_slow",), "1 passed"),  # slow tests selected by name run (not "no tests ran")
        (("test_inner.py::test_slow", "test_inner.py::test_fast"), "2 passed"),  # named beside a fast one, too
        (("-k", "slow"), "1 passed"),  # a -k that leaves only slow tests runs them
    ],
)
def test_the_default_tier_leaves_out_slow_tests_and_says_so(tmp_path, workers, options, summary):
    files = ("test_inner.py",) * ("::" not in "".join(options))
    out = _inner_run(tmp_path, workers, "suite", options=("-rA", *options, *files), summary=summary)
    ran = {name for name in ("test_fast", "test_slow") if f"PASSED test_inner.py::{name}" in out}
    both = {"test_fast", "test_slow"}
    assert ran == {(): {"test_fast"}, ("--slow",): both, ("test_inner.py::test_slow", "test_inner.py::test_fast"): both}.get(
        options, {"test_slow"}), out[-2000:]
    assert ("1 test(s) marked slow not run; add --slow" in out) == (options == ()), out[-2000:]
    if workers == 0:  # (xdist's controller does not count what its workers deselect)
        assert ("deselected" in out) == (options in ((), ("-m", "slow"), ("-k", "slow"))), out[-2000:]
