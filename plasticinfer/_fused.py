"""``TaylorRule(..., derivative="fused")``: one plastic layer's whole simulation in fused CPU kernels.

:func:`simulate` hands the run to :func:`simulate_fused` when the rule asks for it. The forward and the
backward are numba kernels (``_fused_kernels.py``) called through ``jax.pure_callback`` inside a
``jax.custom_vjp``: the gradient with respect to the rule's coefficients and the initial weights is
exact (the same sums as autodiff, in another order); inputs get no gradient (asking for one is
refused). First-order reverse mode only: ``jax.jvp``, ``jax.jacfwd`` and Hessians need
``derivative="forward"`` (:func:`plasticinfer.forward_mode` switches a model, as Laplace intervals and
NUTS's starting mass matrix do).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from ._errors import ModelError

#: rows are split into this many parts, each summed in a fixed order: results do not depend on the thread count,
#: and up to this many threads share the backward
N_PARTS = 8
#: what the kernels allocate for one run's gradient (checkpoints, per-thread buffers, per-trial sums) may take at most
#: this many bytes (per member of a vmapped batch: each runs on its own)
BUFFER_LIMIT = 2**30
#: a segment's buffer (trials × 16 rows × pre) is sized to stay in a core's cache: about this many bytes, unless √T
#: trials take more
SEGMENT_BYTES = 2**20


def padded_width(n_pre: int, itemsize: int) -> int:
    """Inputs per row inside the kernels: ``n_pre`` rounded up to a whole number of 32-byte vectors."""
    lanes = max(1, 32 // itemsize)
    return -(-n_pre // lanes) * lanes


def pad(x: np.ndarray, w0: np.ndarray | None = None):
    """Inputs (and initial weights) with columns padded to :func:`padded_width`: ``(X, XZ, W0)``.

    A row's loop over its inputs is the kernels' SIMD loop, and a remainder shorter than a vector runs
    element by element: at 100 inputs in float32 it cost 11 % of the forward and 7 % of the backward.
    Padding columns copy column 0 in ``X`` and ``W0`` (so they stay finite wherever the real ones do) and
    are zero in ``XZ``, which is what the outputs and the adjoint's input term read: they change no output
    and no gradient, and are cut off the results.
    """
    n, m = x.shape[1], padded_width(x.shape[1], x.dtype.itemsize)
    if m == n:
        return x, x, w0
    xp, xz = np.empty((x.shape[0], m), x.dtype), np.zeros((x.shape[0], m), x.dtype)
    xp[:, :n], xp[:, n:], xz[:, :n] = x, x[:, :1], x
    if w0 is not None:
        w0, w0_real = np.empty((w0.shape[0], m), w0.dtype), w0
        w0[:, :n], w0[:, n:] = w0_real, w0_real[:, :1]
    return xp, xz, w0


def segment_length(n_trials: int, n_pre: int, itemsize: int) -> int:
    """Trials per checkpointed segment: enough to fill :data:`SEGMENT_BYTES`, and at least √T (at most √T checkpoints)."""
    from ._fused_kernels import B

    n_trials = max(1, n_trials)
    return max(1, min(n_trials, max(math.isqrt(n_trials - 1) + 1, SEGMENT_BYTES // (n_pre * B * itemsize))))


def memory(n_trials: int, n_pre: int, n_post: int, itemsize: int, n_threads: int) -> int:
    """Bytes the kernels allocate for one run's gradient: the checkpoints, each thread's segment buffer and block
    outputs, the per-trial coefficient table, the backward's per-part sums and their contraction."""
    from ._fused_kernels import B

    T, n_pre = max(1, n_trials), padded_width(n_pre, itemsize)
    K = segment_length(T, n_pre, itemsize)
    n_seg, n_blocks, threads = -(-T // K), -(-n_post // B), min(N_PARTS, n_threads)
    per_run = (n_blocks * n_seg + threads * (K + 1)) * n_pre * B  # checkpoints, segment buffers
    per_run += threads * (T + K) * B + 2 * T * 27 + (N_PARTS + 2) * T * 27  # block outputs, tables, sums (+ contraction)
    return per_run * itemsize


def requested(rule) -> bool:
    """Whether ``rule`` (or any rule of a dict of rules) asks for the fused kernels."""
    rules = rule.values() if isinstance(rule, dict) else (rule,)
    return any(getattr(r, "derivative", None) == "fused" for r in rules)  # a dict of several is refused by name


@functools.cache
def _kernels():
    try:
        from . import _fused_kernels
    except ImportError as err:
        raise ModelError(
            f'TaylorRule(derivative="fused") runs compiled CPU kernels that need numba ({err}); install it '
            '(pip install "plasticinfer[fast]" or pip install numba) or use derivative="auto"'
        ) from None
    except RuntimeError as err:  # numba found no writable place for its cache of compiled kernels
        raise ModelError(
            f'TaylorRule(derivative="fused"): numba could not set up its kernel cache ({err}); set NUMBA_CACHE_DIR to a '
            'writable folder, or use derivative="auto"'
        ) from None
    return _fused_kernels


def _why_not(rule, network, weights, trials, *, save_weights, environment) -> list[str]:
    from ._networks import FeedForward, identity
    from ._rules import TaylorRule

    if isinstance(rule, dict):
        if set(rule) != {"w"}:
            return [f"one rule for the weights 'w' (got rules for {sorted(rule)})"]
        rule = rule["w"]
    why = []
    if not isinstance(rule, TaylorRule):
        why.append(f"a TaylorRule (got {type(rule).__name__})")
    elif max(max(t.powers) for t in rule.terms) > 2:
        why.append("powers of x, y, w and r up to 2 (the rule has " + ", ".join(t.name for t in rule.terms if max(t.powers) > 2) + ")")
    if type(network) is not FeedForward or network.activation is not identity:
        why.append(f"a FeedForward layer with the identity activation (got {type(network).__name__}"
                   + (f" with {getattr(network.activation, '__name__', network.activation)}" if type(network) is FeedForward else "") + ")")
    x = trials.get("x") if isinstance(trials, dict) else None
    if x is None or getattr(x, "ndim", 0) != 2:
        why.append("one input sample per trial: trials['x'] of shape (trial, pre)" + (f" (got {tuple(x.shape)})" if x is not None else ""))
    r = trials.get("reward") if isinstance(trials, dict) else None
    if r is not None and (getattr(r, "ndim", 0) != 1 or (x is not None and r.shape[0] != x.shape[0])):
        why.append(f"one reward per trial: trials['reward'] of shape (trial,) (got {tuple(r.shape)})")
    if environment is not None:
        why.append("no environment (a closed loop runs step by step)")
    if save_weights:
        why.append("save_weights=False (the kernels keep no trajectory of weights)")
    w = weights.get("w") if isinstance(weights, dict) else None
    if w is not None and w.dtype not in (jnp.float32, jnp.float64):
        why.append(f"float32 or float64 weights (got {w.dtype})")
    if jax.default_backend() != "cpu":
        why.append(f"the CPU (the default backend is {jax.default_backend()})")
    if not why:
        _kernels()  # numba present, or the ModelError naming the extra
    return why


def _check_memory(w0, x):
    """Refuse a gradient whose checkpoints and buffers would pass :data:`BUFFER_LIMIT` (a forward keeps none)."""
    import numba

    need = memory(x.shape[0], x.shape[1], w0.shape[0], w0.dtype.itemsize, numba.get_num_threads())
    if need > BUFFER_LIMIT:
        size = lambda b: f"{b / 2**30:.1f} GiB" if b >= 2**28 else f"{b / 2**20:.1f} MiB"  # noqa: E731
        raise ModelError(
            f'TaylorRule(derivative="fused"): the gradient of this run ({x.shape[0]} trials, a {w0.shape[0]} × {x.shape[1]} '
            f"layer) needs {size(need)} of checkpoints and buffers, over the limit of {size(BUFFER_LIMIT)}; split the "
            'trials into shorter runs, or use derivative="auto" (its √T checkpointing keeps memory in XLA)'
        )


def simulate_fused(rule, network, weights, trials, *, state, save_weights, environment):
    """The :class:`Trajectory` of :func:`simulate` for a rule with ``derivative="fused"``, or a ModelError saying what it needs."""
    from ._simulate import Trajectory

    why = _why_not(rule, network, weights, trials, save_weights=save_weights, environment=environment)
    if why:
        raise ModelError(
            'TaylorRule(derivative="fused") needs ' + "; ".join(why) + '. Use derivative="auto" for anything else'
        )
    if trials["x"].shape[1] != weights["w"].shape[1]:
        raise ModelError(
            f"the network {type(network).__name__} (weights {network.weight_shapes()}) cannot run on one trial's inputs "
            f"{{'x': {tuple(trials['x'].shape[1:])}}}: x has {trials['x'].shape[1]} values, W has {weights['w'].shape[1]} columns. "
            "Give inputs that fit the network"
        )
    rule = rule["w"] if isinstance(rule, dict) else rule
    w0 = weights["w"]
    dtype = w0.dtype
    theta = rule._dense()
    theta = jnp.pad(theta, [(0, 3 - s) for s in theta.shape]).astype(dtype)
    x = trials["x"].astype(dtype)
    r = trials["reward"].astype(dtype) if "reward" in trials else jnp.zeros(x.shape[0], dtype)
    if x.shape[0] == 0:  # no trials: no outputs, the weights as they were (the kernels need one trial)
        return Trajectory(jnp.zeros((0, w0.shape[0]), dtype), {"w": w0}, None, state, None)
    outputs, final = _layer(float(rule.learning_rate), theta, w0, x, r)
    return Trajectory(outputs, {"w": final}, None, state, None)


def _shapes(w0, x):
    return (jax.ShapeDtypeStruct((x.shape[0], w0.shape[0]), w0.dtype), jax.ShapeDtypeStruct(w0.shape, w0.dtype))


def _checkpoint_shape(w0, x):
    from ._fused_kernels import B

    n_pre = padded_width(x.shape[1], w0.dtype.itemsize)
    K = segment_length(x.shape[0], n_pre, w0.dtype.itemsize)
    return K, jax.ShapeDtypeStruct((-(-w0.shape[0] // B), -(-x.shape[0] // K), B, n_pre), w0.dtype)


def _host_forward(lr, K, theta, w0, x, r):
    """The kernels' forward; with K (trials per segment, fixed when the gradient was traced) it also returns the checkpoints."""
    k = _kernels()
    theta, w0, x, r = (np.ascontiguousarray(a) for a in (theta, w0, x, r))
    n_pre = x.shape[1]
    xp, xz, w0 = pad(x, w0)
    y, wt = np.empty((x.shape[0], w0.shape[0]), w0.dtype), np.empty_like(w0)
    n_seg = 0 if K is None else -(-x.shape[0] // K)
    ck = np.empty((-(-w0.shape[0] // k.B) if K else 0, n_seg, k.B, xp.shape[1]), w0.dtype)
    k.forward(theta, w0.dtype.type(lr), w0, xp, xz, r, y, wt, ck, x.shape[0] if K is None else K)
    wt = np.ascontiguousarray(wt[:, :n_pre])
    return (y, wt) if K is None else (y, wt, ck)


def _host_backward(lr, K, theta, x, r, ck, ybar, wtbar):
    k = _kernels()
    theta, x, r, ck, ybar, wtbar = (np.ascontiguousarray(a) for a in (theta, x, r, ck, ybar, wtbar))
    n_pre = x.shape[1]
    xp, xz, _ = pad(x)
    wtbar = np.pad(wtbar, [(0, 0), (0, xp.shape[1] - n_pre)]) if xp.shape[1] > n_pre else wtbar  # padding: zero adjoint
    w0bar = np.empty_like(wtbar)
    acc = np.zeros((N_PARTS, x.shape[0], 3, 3, 3), wtbar.dtype)
    k.backward(theta, wtbar.dtype.type(lr), xp, xz, r, ybar, wtbar, ck, K, w0bar, acc, True)
    return k.coefficient_cotangent(acc, r, wtbar.dtype.type(lr)), np.ascontiguousarray(w0bar[:, :n_pre])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _layer(lr, theta, w0, x, r):
    return jax.pure_callback(functools.partial(_host_forward, lr, None), _shapes(w0, x), theta, w0, x, r, vmap_method="sequential")


def _layer_fwd(lr, theta, w0, x, r):
    for name, arg in (("inputs x", x), ("rewards", r)):
        if arg.perturbed:
            raise ModelError(
                f'TaylorRule(derivative="fused") gives gradients for the rule and the initial weights, not for the {name}; '
                'use derivative="auto" to differentiate with respect to them'
            )
    theta, w0, x, r = theta.value, w0.value, x.value, r.value
    _check_memory(w0, x)
    K, checkpoints = _checkpoint_shape(w0, x)  # fixed here, when the gradient is traced, for both callbacks
    y, wt, ck = jax.pure_callback(functools.partial(_host_forward, lr, K), (*_shapes(w0, x), checkpoints), theta, w0, x, r,
                                  vmap_method="sequential")
    return (y, wt), (theta, x, r, ck, jnp.zeros((K, 0), w0.dtype))  # an empty array whose shape carries K to the backward


def _layer_bwd(lr, residuals, cotangents):
    theta, x, r, ck, carrier = residuals
    K = carrier.shape[0]
    ybar, wtbar = cotangents
    n_post = ybar.shape[1] if not isinstance(ybar, SymbolicZero) else wtbar.shape[0]
    dtype = ck.dtype
    ybar = jnp.zeros((x.shape[0], n_post), dtype) if isinstance(ybar, SymbolicZero) else ybar
    wtbar = jnp.zeros((n_post, x.shape[1]), dtype) if isinstance(wtbar, SymbolicZero) else wtbar
    shapes = (jax.ShapeDtypeStruct(theta.shape, theta.dtype), jax.ShapeDtypeStruct((n_post, x.shape[1]), dtype))
    theta_bar, w0_bar = jax.pure_callback(
        functools.partial(_host_backward, lr, K), shapes, theta, x, r, ck, ybar.astype(dtype), wtbar.astype(dtype),
        vmap_method="sequential",
    )
    return theta_bar, w0_bar, jnp.zeros_like(x), jnp.zeros_like(r)


_layer.defvjp(_layer_fwd, _layer_bwd, symbolic_zeros=True)
