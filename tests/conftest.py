"""Strict JAX for the whole suite: float64, strict dtype promotion, PRNG keys from fixtures."""

import os
from pathlib import Path

# The fast tier's time goes mostly to XLA compiling many small programs that then run for milliseconds.
# JAX's "most optimizations off" (XLA backend -O0, no expensive LLVM passes) compiles ~30 % faster, but
# the compiled code runs slower (2.4x for the demo's 300-step fit). So: off for the fast tier, on for the
# tests marked slow, which are long runs (see _full_optimisation_for_slow_tests). Set before jax is
# imported so that it also reaches every subprocess; setting JAX_DISABLE_MOST_OPTIMIZATIONS yourself
# (0 or 1) applies that value to every test.
# The variable is inherited by the xdist workers from the controller, whose conftest set it: a marker tells them that
# the suite chose it, not the user (without it every slow test ran unoptimised under `pytest -n 2`: the CLI fit test
# took 159 s instead of 28).
_USER_CHOSE_OPTIMISATION = (
    "JAX_DISABLE_MOST_OPTIMIZATIONS" in os.environ and os.environ.get("PLASTICINFER_TEST_SUITE_SET_OPTIMISATION") != "1"
)
if not _USER_CHOSE_OPTIMISATION:
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    os.environ["PLASTICINFER_TEST_SUITE_SET_OPTIMISATION"] = "1"

# One on-disk compilation cache for the whole run, shared by both xdist workers and every subprocess a test
# starts (the CLI, tutorials, the two-process test): the same small programs are compiled again and again by
# different processes, and by one process after its caches were dropped (below). Fast tier, back to back on
# 2 cores: 463 s without it, 429 s with it (an earlier pair: 487 s, 377 s; single runs here vary by ±20 %).
# Set before jax is imported; the process that creates the folder (the controller: the workers and
# subprocesses inherit the variables) removes it at the end. (JAX's bounded cache, which locks every read
# and write, made the fast tier slower than no cache at all: 908 s.) A JAX_COMPILATION_CACHE_DIR of your
# own is used as it is and kept.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
_OWN_COMPILATION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _OWN_COMPILATION_CACHE = tempfile.mkdtemp(prefix="plasticinfer-test-jax-cache-")
    atexit.register(shutil.rmtree, _OWN_COMPILATION_CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_COMPILATION_CACHE
# Without a lock, a process can read an entry another is still writing: JAX then recompiles and warns; the
# warning must not fail a test, in this process (pyproject's filterwarnings) or in a subprocess
_CACHE_WARNING = "Error reading persistent compilation cache entry"
if _CACHE_WARNING not in os.environ.get("PYTHONWARNINGS", ""):
    os.environ["PYTHONWARNINGS"] = ",".join(
        filter(None, [os.environ.get("PYTHONWARNINGS", ""), f"ignore:{_CACHE_WARNING}:UserWarning"])
    )

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def key():
    return jax.random.key(1234)


@pytest.fixture
def getkey():
    """A function returning fresh, independent keys (split, never reused)."""
    state = {"key": jax.random.key(5678)}

    def _next():
        state["key"], sub = jax.random.split(state["key"])
        return sub

    return _next


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding the real datasets; tests that need it are skipped on a clone without it."""
    path = Path(os.environ.get("PLASTICINFER_DATA_DIR") or SHARED_DATA)
    if not path.is_dir():
        pytest.skip(
            f"real data folder not found at {path}: set PLASTICINFER_DATA_DIR to a folder holding the datasets "
            "(or run `plasticinfer datasets download NAME`)"
        )
    return path


# --- bounded memory: JAX keeps every program it compiles for the life of the process --------------------------------
# A test worker compiles ~4,000 programs in the fast tier and grew to ~4.5 GB, nearly all of it JAX's caches. When a
# test module ends with the process above this size, the caches are dropped (test modules rarely share compiled
# programs; the next one compiles what it needs) and the freed memory is handed back to the system.
CACHE_LIMIT_MIB = float(os.environ.get("PLASTICINFER_TEST_CACHE_LIMIT_MIB", "2500"))


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):  # not Linux: never clear
        return 0.0


# Within a module the limit is higher (its tests often share programs); one module's tests grew a worker
# from 5 to 8.7 GB before this per-test check.
TEST_CACHE_LIMIT_MIB = float(os.environ.get("PLASTICINFER_TEST_CACHE_LIMIT_MIB_PER_TEST", "4000"))


def _drop_jax_caches() -> None:
    import ctypes
    import gc

    jax.clear_caches()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@pytest.fixture(autouse=True, scope="module")
def _bounded_jax_caches():
    yield
    if _rss_mib() > CACHE_LIMIT_MIB:
        _drop_jax_caches()


@pytest.fixture(autouse=True)
def _bounded_jax_caches_per_test():
    yield
    if _rss_mib() > TEST_CACHE_LIMIT_MIB:
        _drop_jax_caches()


@pytest.fixture(autouse=True)
def _full_optimisation_for_slow_tests(request):
    """Tests marked slow are long runs of few programs: compile them fully optimised (see the top). Those also marked
    compile_bound spend their time compiling many programs that each run briefly (the documented commands at 3
    steps, a tutorial's small size): they keep the fast tier's setting, measured faster for each of them."""
    if (_USER_CHOSE_OPTIMISATION or request.node.get_closest_marker("slow") is None
            or request.node.get_closest_marker("compile_bound") is not None):
        yield
        return
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "0"  # for the subprocesses the test starts
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
        jax.config.update("jax_disable_most_optimizations", True)


# --- the longest tests first ---------------------------------------------------------------------------------------------
# xdist's default scheduling hands out the first quarter of the collection round-robin and the rest as workers free
# up; a 7-minute test collected late was the tail of every run (one worker busy, the other idle). These single,
# self-contained tests (no module-scoped fixtures) start first, longest first; every other test keeps its place.
# Seconds: the last full run that printed durations (2 cores).
LONGEST_FIRST = (
    "tests/test_docs_commands.py::test_documented_commands_run",  # 129
    "tests/test_tutorials.py::test_tutorial_runs[04_fly_reward_learning.py]",  # 84
    "tests/test_tutorial_03.py::test_tutorial_03_runs",  # 72
    "tests/test_fly.py::test_hierarchical_fit_recovers_population_decay",  # 57
    "tests/test_cli_resume.py::test_fly_nuts_interrupted_then_resumed_equals_uninterrupted",  # 55
    "tests/test_tutorial_09.py::test_tutorial_09_runs",  # 55
    "tests/test_tutorial_05.py::test_tutorial_05_runs_small",  # 45
    "tests/test_distributed.py::test_two_processes_on_localhost_equal_one_process",  # 44
    "tests/test_bayes_calibration.py::test_sbc_small_rule_is_calibrated",  # 43
    "tests/test_cli.py::test_simulate_then_fit",  # 43
)


def pytest_addoption(parser):
    parser.addoption(
        "--slow", action="store_true",
        help="also run the tests marked slow (recovery checks, tutorials, long CLI runs): the whole suite, as .ci/run and "
             "the README run it. Without it (and without -m) the fast tier runs; slow tests named as path::test, or all "
             "that is left after -k, still run",
    )


_SLOW_LEFT_OUT: list[int] = []


def _named(config, item) -> bool:
    """Whether ``item`` was named on the command line: ``path::test``, ``path::test[param]`` or ``path::Class``."""
    from pathlib import Path

    inside = item.nodeid.split("::", 1)[1]
    for arg in config.args:
        file, _, rest = arg.partition("::")
        if not rest:
            continue
        path = Path(file) if Path(file).is_absolute() else Path(config.invocation_params.dir) / file
        if path.resolve() == Path(item.path).resolve() and (inside == rest or inside.startswith((rest + "::", rest + "["))):
            return True
    return False


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected theirs
def pytest_collection_modifyitems(config, items):
    """The default tier is the fast one: tests marked slow run with --slow, under a -m of the user's, when named on the
    command line (``path::test``), or when they are all that is left to run (``pytest tests/test_tutorial_05.py`` runs
    it, rather than nothing). Then the longest tests first."""
    if not (config.getoption("--slow") or config.getoption("markexpr")):
        slow = [item for item in items if item.get_closest_marker("slow") is not None and not _named(config, item)]
        if slow and len(slow) < len(items):
            config.hook.pytest_deselected(items=slow)
            left_out = set(map(id, slow))
            items[:] = [item for item in items if id(item) not in left_out]
            _SLOW_LEFT_OUT.append(len(slow))
    rank = {nodeid: i for i, nodeid in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid, len(rank)))  # stable: the rest keep the collection order


# --- peak memory per test process, printed at the end of the run (issue: report memory per xdist worker) ------------
def _peak_rss_mib() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


_WORKER_PEAKS: dict[str, float] = {}


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # inside an xdist worker: hand the figures to the controller
        workeroutput["peak_rss_mib"] = _peak_rss_mib()
        workeroutput["slow_left_out"] = _SLOW_LEFT_OUT[-1] if _SLOW_LEFT_OUT else 0


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    peak = getattr(node, "workeroutput", {}).get("peak_rss_mib")
    if peak is not None:
        _WORKER_PEAKS[node.gateway.id] = peak
    left_out = getattr(node, "workeroutput", {}).get("slow_left_out")
    if left_out and not _SLOW_LEFT_OUT:  # every worker collects the same tests
        _SLOW_LEFT_OUT.append(left_out)


def pytest_terminal_summary(terminalreporter):
    if _SLOW_LEFT_OUT and not hasattr(terminalreporter.config, "workerinput"):
        terminalreporter.write_line(
            f"fast tier: {_SLOW_LEFT_OUT[-1]} test(s) marked slow not run; add --slow for the whole suite (what .ci/run runs)"
        )
    if _WORKER_PEAKS:
        figures = ", ".join(f"{k} {v:,.0f} MiB" for k, v in sorted(_WORKER_PEAKS.items()))
        terminalreporter.write_line(f"peak memory per test worker: {figures}")
    elif not hasattr(terminalreporter.config, "workerinput"):
        terminalreporter.write_line(f"peak memory of the test process: {_peak_rss_mib():,.0f} MiB")


def pytest_unconfigure(config):
    """The process that created the compilation cache folder removes it (atexit too, as a fallback)."""
    if _OWN_COMPILATION_CACHE is not None:
        import shutil

        shutil.rmtree(_OWN_COMPILATION_CACHE, ignore_errors=True)
