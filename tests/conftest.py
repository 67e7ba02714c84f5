"""Strict JAX for the whole suite: float64, strict dtype promotion, PRNG keys from fixtures."""

import os
from pathlib import Path

import jax
import pytest

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
