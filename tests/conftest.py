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
    path = Path(os.environ.get("PLASTICINFER_DATA_DIR", SHARED_DATA))
    if not path.exists():
        pytest.fail(f"shared data folder not found at {path}; set PLASTICINFER_DATA_DIR")
    return path
