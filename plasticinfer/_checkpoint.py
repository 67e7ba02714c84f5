"""Checkpoints: the whole state of a fit or a sampler, written atomically, resumable bit for bit.

A checkpoint is an ``.npz`` file holding every array of the state (for a fit: parameters,
optimiser state, best-so-far parameters and losses, divergence steps, loss and held-out
histories; for NUTS: each chain's sampler state and the draws and statistics so far) plus a
JSON header with the step reached and a fingerprint of the problem (model structure, data,
starting point and settings), so a checkpoint is never resumed against a different model or
data set.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jax
import numpy as np

from ._errors import DataError, FileFormatError, ModelError
from ._io import atomic_write
from ._results_io import strip_addresses

_FORMAT = "plasticinfer-checkpoint/2"  # 2: a fit's state counts its discarded steps


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


def check_checkpoint_options(checkpoint, checkpoint_every: int, resume: bool) -> None:
    """The checks every ``checkpoint=, checkpoint_every=, resume=`` triple gets."""
    if checkpoint_every < 1:
        raise ModelError(f"checkpoint_every must be ≥ 1; got {checkpoint_every}")
    if resume and checkpoint is None:
        raise ModelError("resume=True needs checkpoint=PATH (the file to resume from)")
    if checkpoint is not None:  # before any work, not at the first save
        path = Path(checkpoint)
        if path.is_dir():
            raise FileFormatError(f"checkpoint={str(path)!r} is a folder; give a file name, e.g. {str(path / 'run.ckpt')!r}")
        if not path.parent.is_dir():
            raise FileFormatError(f"checkpoint={str(path)!r}: folder {str(path.parent)!r} does not exist. Create it.")


def _is_key(leaf) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def save_checkpoint(path: str | os.PathLike, trees: dict, header: dict) -> Path:
    """Write the named pytrees' leaves and a JSON header to ``path`` atomically.

    Typed PRNG keys (``jax.random.key``) are stored as their key data and typed again on loading.
    """
    arrays = {}
    counts = {}
    for name, tree in trees.items():
        leaves = jax.tree_util.tree_leaves(tree)
        counts[name] = len(leaves)
        for i, leaf in enumerate(leaves):
            arrays[f"{name}/{i}"] = np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
    meta = json.dumps({"format": _FORMAT, "counts": counts, **header}, sort_keys=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, __header__=np.frombuffer(meta.encode(), dtype=np.uint8), **arrays)

    return atomic_write(path, write)


#: What must match for a fit's checkpoint to resume (the text of the mismatch error).
FIT_IDENTITY = "fit (model structure, data, starting parameters, optimiser, penalty or restarts differ)"


def load_checkpoint(
    path: str | os.PathLike, like: dict, expected_fingerprint: str, identity: str = FIT_IDENTITY
) -> tuple[dict, dict]:
    """Read a checkpoint: parts named in ``like`` as pytrees of its structure, others as lists of arrays.

    Refuses a checkpoint written for another problem (fingerprint mismatch), saying it belongs to a
    different ``identity`` (what was run and what differs).
    """
    parts, header = read_checkpoint(path, expected_fingerprint, identity)
    trees = {name: as_tree(path, name, stored, like[name]) if name in like else stored for name, stored in parts.items()}
    return trees, header


def read_checkpoint(path: str | os.PathLike, expected_fingerprint: str, identity: str = FIT_IDENTITY) -> tuple[dict, dict]:
    """The first half of :func:`load_checkpoint`: every part as a list of arrays, and the header.

    Checks the file and its fingerprint before the caller builds anything to restore into.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z["__header__"]).decode())
            arrays = {k: z[k] for k in z.files if k != "__header__"}
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise DataError(f"{path}: cannot read as a plasticinfer checkpoint ({type(e).__name__}: {e}); delete it to start afresh") from None
    found = header.get("format") if isinstance(header, dict) else None
    if isinstance(found, str) and found.startswith("plasticinfer-checkpoint/") and found != _FORMAT:
        raise DataError(
            f"{path}: a checkpoint of an earlier plasticinfer (format {found!r}, this version writes {_FORMAT!r}), "
            "whose saved state this version cannot continue. Delete it (or use another checkpoint path) to start afresh."
        )
    if found != _FORMAT:
        raise DataError(f"{path}: not a plasticinfer checkpoint (format {found!r})")
    if header.get("fingerprint") != expected_fingerprint:
        raise DataError(
            f"{path}: this checkpoint belongs to a different {identity}. Use another checkpoint path, "
            "delete this file, or pass resume=False to overwrite it."
        )
    try:
        parts = {name: [arrays[f"{name}/{i}"] for i in range(count)] for name, count in header["counts"].items()}
    except (KeyError, TypeError, AttributeError):
        raise DataError(f"{path}: checkpoint is incomplete (its arrays do not match its header); delete it to start afresh") from None
    return parts, header


def as_tree(path: str | os.PathLike, name: str, stored: list, like):
    """The second half of :func:`load_checkpoint`: the arrays of part ``name`` as a pytree like ``like``."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    plain = [jax.random.key_data(b) if _is_key(b) else b for b in leaves]  # compare keys as their data
    if len(stored) != len(plain) or any(np.shape(a) != np.shape(b) for a, b in zip(stored, plain)):
        raise DataError(f"{path}: checkpoint part {name!r} does not match this run's state; delete it to start afresh")
    return jax.tree_util.tree_unflatten(
        treedef,
        [
            jax.random.wrap_key_data(jax.numpy.asarray(a, dtype=b.dtype), impl=jax.random.key_impl(t))
            if _is_key(t)
            else jax.numpy.asarray(a, dtype=np.asarray(b).dtype if not hasattr(b, "dtype") else b.dtype)
            for a, b, t in zip(stored, plain, leaves)
        ],
    )
