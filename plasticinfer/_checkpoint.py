"""Optimiser checkpoints: the whole state of a fit, written atomically, resumable bit for bit.

A checkpoint is an ``.npz`` file holding every array of the optimisation state (parameters,
optimiser state, best-so-far parameters and losses, divergence steps, loss and held-out
histories) plus a JSON header with the step reached and a fingerprint of the problem
(model structure, data, starting parameters, optimiser and penalty), so a checkpoint is
never resumed against a different model or data set.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jax
import numpy as np

from ._errors import DataError
from ._io import atomic_write
from ._results_io import strip_addresses

_FORMAT = "plasticinfer-checkpoint/1"


def _describe(obj, depth: int = 0) -> str:
    """Address-free text of an object; functions include their closure (an optimiser's hyperparameters)."""
    if depth > 6:
        return "…"
    cells = getattr(obj, "__closure__", None)
    if callable(obj) and cells:
        inner = ", ".join(_describe(c.cell_contents, depth + 1) for c in cells if _filled(c))
        return f"{getattr(obj, '__qualname__', type(obj).__name__)}[{inner}]"
    if isinstance(obj, (tuple, list)):
        return "(" + ", ".join(_describe(v, depth + 1) for v in obj) + ")"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v, depth + 1)}" for k, v in sorted(obj.items(), key=lambda kv: repr(kv[0]))) + "}"
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        a = np.asarray(obj)
        return f"array{a.shape}{a.dtype}:{hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]}"
    return strip_addresses(repr(obj))


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell (a name bound later)
        return False
    return True


def fingerprint(*parts) -> str:
    """SHA-256 over the structure and bytes of every pytree in ``parts`` (and the repr of non-arrays)."""
    h = hashlib.sha256()
    for part in parts:
        leaves, treedef = jax.tree_util.tree_flatten(part)
        h.update(strip_addresses(str(treedef)).encode())
        for leaf in leaves:
            if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
                a = np.asarray(jax.random.key_data(leaf) if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) else leaf)
                h.update(f"{a.dtype}{a.shape}".encode())
                h.update(np.ascontiguousarray(a).tobytes())
            else:
                h.update(_describe(leaf).encode())
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, trees: dict, header: dict) -> Path:
    """Write the named pytrees' leaves and a JSON header to ``path`` atomically."""
    arrays = {}
    counts = {}
    for name, tree in trees.items():
        leaves = jax.tree_util.tree_leaves(tree)
        counts[name] = len(leaves)
        for i, leaf in enumerate(leaves):
            arrays[f"{name}/{i}"] = np.asarray(leaf)
    meta = json.dumps({"format": _FORMAT, "counts": counts, **header}, sort_keys=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, __header__=np.frombuffer(meta.encode(), dtype=np.uint8), **arrays)

    return atomic_write(path, write)


def load_checkpoint(path: str | os.PathLike, like: dict, expected_fingerprint: str) -> tuple[dict, dict]:
    """Read a checkpoint: parts named in ``like`` as pytrees of its structure, others as lists of arrays.

    Refuses a checkpoint written for another problem (fingerprint mismatch).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z["__header__"]).decode())
            arrays = {k: z[k] for k in z.files if k != "__header__"}
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise DataError(f"{path}: cannot read as a plasticinfer checkpoint ({type(e).__name__}: {e}); delete it to start afresh") from None
    if header.get("format") != _FORMAT:
        raise DataError(f"{path}: not a plasticinfer checkpoint (format {header.get('format')!r})")
    if header.get("fingerprint") != expected_fingerprint:
        raise DataError(
            f"{path}: this checkpoint belongs to a different fit (model structure, data, starting parameters, "
            "optimiser, penalty or restarts differ). Use another checkpoint path, delete this file, or pass "
            "resume=False to overwrite it."
        )
    trees = {}
    for name, count in header["counts"].items():
        stored = [arrays[f"{name}/{i}"] for i in range(count)]
        if name not in like:
            trees[name] = stored
            continue
        leaves, treedef = jax.tree_util.tree_flatten(like[name])
        if count != len(leaves) or any(np.shape(a) != np.shape(b) for a, b in zip(stored, leaves)):
            raise DataError(f"{path}: checkpoint part {name!r} does not match this fit's state; delete it to start afresh")
        trees[name] = jax.tree_util.tree_unflatten(
            treedef, [jax.numpy.asarray(a, dtype=np.asarray(b).dtype if not hasattr(b, "dtype") else b.dtype) for a, b in zip(stored, leaves)]
        )
    return trees, header
