"""NUTS: its settings and the runner that samples a model's posterior in resumable chunks."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import PRNGKeyArray
from numpyro.infer.initialization import init_to_value
from numpyro.infer.util import unconstrain_fn

from .._checkpoint import as_tree, check_checkpoint_options, fingerprint, read_checkpoint, save_checkpoint
from .._errors import DataError, InterruptedWarning, ModelError
from .._errors import warn as _warn
from .._progress import show_progress
from .._rules import forward_mode
from .._trial_data import TrialData
from ._numpyro_model import ModelSpec

#: ``NUTS(dense_mass=None)`` adapts a dense mass matrix up to this many unconstrained dimensions.
DENSE_MAX_DIMENSION = 20

@dataclass(frozen=True)
class NUTS:
    """No-U-Turn sampling (NumPyro), the default for small rules.

    Attributes:
        warmup: adaptation steps per chain (discarded).
        samples: draws kept per chain.
        chains: independent chains (R-hat needs ≥ 2).
        target_accept: target acceptance probability; raise it (0.9–0.99) when there are divergences.
        max_tree_depth: at most 2^depth leapfrog steps per draw.
        dense_mass: adapt a dense mass matrix (helps correlated terms; costs O(d²)). ``None`` (default):
            dense up to ``DENSE_MAX_DIMENSION`` unconstrained dimensions (a shared rule), diagonal above
            (hierarchical fits, where dense adaptation needs far more warmup than it saves).
        chain_method: ``"parallel"`` (one chain per JAX device), ``"vectorized"`` (chains vmapped
            on one device) or ``"sequential"``. ``None`` picks ``"parallel"`` when
            ``jax.local_device_count() >= chains`` and ``"vectorized"`` otherwise. On a CPU,
            JAX has one device unless ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (or
            ``numpyro.set_host_device_count(N)``) runs *before* JAX starts; the ``plasticinfer``
            command line does that, a library cannot do it safely.
        init_jitter: standard deviation of the noise added (in unconstrained space) to the warm
            start of each chain, so chains start apart.

    Sampling runs as compiled chunks of iterations (warmup and draws in one ``lax.scan`` per chunk):
    one chunk when nobody watches, about 20 with a progress bar (``sample(progress=True)``, the
    default, on a terminal or in Jupyter), chunks of ``checkpoint_every`` with ``sample(checkpoint=...)``,
    each saved. However the run is cut, the draws are the same.
    """

    warmup: int = 500
    samples: int = 500
    chains: int = 2
    target_accept: float = 0.8
    max_tree_depth: int = 10
    dense_mass: bool | None = None
    chain_method: str | None = None
    init_jitter: float = 0.02

    def __post_init__(self):
        from .._fit import check_count, check_real

        for name, minimum in (("warmup", 0), ("samples", 1), ("chains", 1), ("max_tree_depth", 1)):
            object.__setattr__(self, name, check_count(getattr(self, name), f"NUTS.{name}", minimum=minimum))
        check_real(self.target_accept, "NUTS.target_accept (a probability, e.g. 0.8 or 0.95)", minimum=0, maximum=1,
                   open_low=True, open_high=True)
        object.__setattr__(self, "target_accept", float(self.target_accept))  # its repr, saved with a posterior, reads back
        check_real(self.init_jitter, "NUTS.init_jitter", minimum=0)

    def resolved_chain_method(self) -> str:
        if self.chain_method is not None:
            if self.chain_method not in ("parallel", "vectorized", "sequential"):
                raise ModelError(f"NUTS.chain_method must be 'parallel', 'vectorized' or 'sequential'; got {self.chain_method!r}")
            return self.chain_method
        if self.chains == 1:
            return "sequential"
        return "parallel" if jax.local_device_count() >= self.chains else "vectorized"


def _uses_fused(model) -> bool:
    return any(r.derivative == "fused" for r in model.taylor_rules().values())


#: Above this many unconstrained dimensions the warm start's mass matrix is the identity (no Hessian).
HESSIAN_MAX_DIMENSION = 600


def _initial_inverse_mass(potential_fn, z0: dict, dense: bool):
    """Inverse Hessian of the potential at the warm start: the posterior's covariance to second order.

    NUTS then starts with a mass matrix fitted to the posterior's scales (and, with ``dense``, its
    correlations) instead of the identity: with coefficients whose posterior sd differ by 100×
    (x·r vs w) the identity forces tiny steps and deep trees for the whole first adaptation window.
    Where the Hessian is not positive definite (a start away from the mode, a flat direction) the
    conditional variances 1/H_ii are used instead (1 where H_ii ≤ 0). Returns the diagonal, or with
    ``dense`` the full matrix.
    """
    flat, unravel = ravel_pytree(z0)
    n = flat.size
    if n > HESSIAN_MAX_DIMENSION:
        return jnp.eye(n, dtype=flat.dtype) if dense else jnp.ones_like(flat)
    potential = lambda f: potential_fn(unravel(f))
    try:
        h = jax.hessian(potential)(flat)  # forward over reverse
    except TypeError as err:  # a custom_vjp that forward mode cannot enter even over reverse (the Taylor VJP can)
        if "forward-mode" not in str(err):
            raise
        h = jax.jacrev(jax.grad(potential))(flat)  # reverse over reverse
    h = jnp.where(jnp.isfinite(h), 0.5 * (h + h.T), 0.0)
    evals, evecs = jnp.linalg.eigh(h)
    positive = evals[0] > 1e-8 * jnp.maximum(evals[-1], 1e-300)
    cov = (evecs / jnp.where(positive, evals, 1.0)) @ evecs.T
    diag_h = jnp.diag(h)
    conditional = jnp.where(diag_h > 0, 1.0 / jnp.where(diag_h > 0, diag_h, 1.0), 1.0)
    var = jnp.clip(jnp.where(positive, jnp.diag(cov), conditional), 1e-10, 1e2)
    if not dense:
        return var
    scale = jnp.sqrt(var / jnp.clip(jnp.diag(cov), 1e-300, None))
    return jnp.where(positive, cov * scale[:, None] * scale[None, :], jnp.diag(var))


def unconstrained_potential(spec: ModelSpec, data: TrialData, latent: dict, key: PRNGKeyArray, *, second_order: bool):
    """``(potential_gen, z0)``: NumPyro's potential (negative log posterior over the unconstrained latent
    sites, as a function of the data) and ``latent`` in that unconstrained space.

    ``second_order``: built so that it can be differentiated twice. The fused kernels give first-order
    reverse mode only, so a model with fused rules is then built with the JVP instead (the same
    potential, another derivative).
    """
    from numpyro.infer.util import initialize_model

    if second_order and _uses_fused(spec.template):
        spec = copy.copy(spec)
        spec.template = forward_mode(spec.template)
    info, potential_gen, _, _ = initialize_model(
        key[None], spec.numpyro_model, model_args=(data,), dynamic_args=True, init_strategy=init_to_value(values=latent)
    )
    return potential_gen, jax.tree_util.tree_map(lambda a: a[0], info.z)


#: Above this many unconstrained dimensions SVI starts every spread at AutoNormal's 0.1 (no Hessian diagonal:
#: it costs one Hessian-vector product, about one SVI step, per dimension).
SVI_HESSIAN_MAX_DIMENSION = 1000


def flat_hessian(potential, flat: jax.Array) -> jax.Array | None:
    """The Hessian of ``potential`` (a function of the flat vector) at ``flat``; None above
    ``SVI_HESSIAN_MAX_DIMENSION`` dimensions. One Hessian-vector product per dimension (forward over
    reverse; reverse over reverse where a custom VJP has no forward mode), in batches of 16.
    """
    n = int(flat.size)
    if n == 0 or n > SVI_HESSIAN_MAX_DIMENSION:
        return None
    grad = jax.grad(potential)

    def forward(i):
        return jax.jvp(grad, (flat,), (jax.nn.one_hot(i, n, dtype=flat.dtype),))[1]

    def reverse(i):
        return jax.grad(lambda f: jnp.vdot(grad(f), jax.nn.one_hot(i, n, dtype=flat.dtype)))(flat)

    rows = jnp.arange(n)
    try:
        return jax.jit(lambda: jax.lax.map(forward, rows, batch_size=min(n, 16)))()
    except TypeError as err:  # a custom_vjp that forward mode cannot enter even over reverse
        if "forward-mode" not in str(err):
            raise
        return jax.jit(lambda: jax.lax.map(reverse, rows, batch_size=min(n, 16)))()


def conditional_sds(h: jax.Array) -> jax.Array:
    """``1/sqrt(H_ii)``: the conditional posterior sd of each unconstrained scalar, from the Hessian ``h``.

    For a Gaussian posterior this is exactly the spread of the best mean-field Gaussian (the optimum of
    AutoNormal's ELBO), so SVI started there needs only to refine it. Entries where ``H_ii`` is not
    positive and finite (a start away from the mode, a flat direction) are NaN.
    """
    d = jnp.diagonal(h)
    good = jnp.isfinite(d) & (d > 0)
    return jnp.where(good, 1.0 / jnp.sqrt(jnp.where(good, d, 1.0)), jnp.nan)


#: What must match for a NUTS checkpoint to resume (the text of the mismatch error).
_IDENTITY = "NUTS run (model structure, data, priors, starting point, key or NUTS settings differ)"


class NUTSRunner:
    """NUTS (NumPyro's sampler, through its functional interface) for one model structure.

    Compiled once per runner and reused for every dataset of the same shape (simulation-based
    calibration). Each chain starts at the warm start plus ``init_jitter`` noise in unconstrained
    space, with the mass matrix initialised from the Hessian there (``_initial_inverse_mass``);
    NumPyro's windowed adaptation then refines step size and mass matrix during warmup.

    Warmup and sampling run as compiled chunks of iterations over NumPyro's ``HMCState``, which
    carries everything the next iteration needs (position, adaptation state, iteration count and
    the chain's RNG key). Every iteration therefore does the same arithmetic with the same key
    however the run is cut into chunks, and a state written to a checkpoint after a chunk and read
    back continues the chain exactly.
    """

    def __init__(self, spec: ModelSpec, config: NUTS):
        if config.chains < 1 or config.samples < 1 or config.warmup < 0:
            raise ModelError(f"NUTS needs chains ≥ 1, samples ≥ 1, warmup ≥ 0; got {config}")
        self.spec = spec
        self.config = config
        self.chain_method = config.resolved_chain_method()
        if self.chain_method == "parallel" and _uses_fused(spec.template):
            # jax.pmap and the fused kernels' host callbacks deadlock (JAX 0.10, CPU): chains are vmapped instead
            if config.chain_method == "parallel":
                raise ModelError(
                    'NUTS(chain_method="parallel") cannot run a TaylorRule(derivative="fused") (its host callbacks '
                    'deadlock under jax.pmap); use chain_method="vectorized", or derivative="auto"'
                )
            self.chain_method = "vectorized"
        self._kernels = None
        self._advance: dict[int, object] = {}
        self.warmup_stats: dict | None = None

    def _build(self, data: TrialData, latent: dict, key: PRNGKeyArray) -> None:
        """NumPyro's kernels for this model structure, mapped over chains (once per runner)."""
        from numpyro.infer.hmc import hmc
        from numpyro.infer.util import initialize_model

        # a batch of one key: NumPyro then checks its initial point in one compiled loop, not op by op
        # (1.4–4.8 s less per sampler on a 2-core CPU); the point itself is unused: chains start from `latent`
        _, potential_gen, postprocess_gen, _ = initialize_model(
            key[None], self.spec.numpyro_model, model_args=(data,), dynamic_args=True, init_strategy=init_to_value(values=latent)
        )
        init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")
        hessian_gen = unconstrained_potential(self.spec, data, latent, key, second_order=True)[0] if _uses_fused(self.spec.template) else potential_gen
        config = self.config
        dim = int(ravel_pytree(self._start(data, latent))[0].size)
        dense = config.dense_mass if config.dense_mass is not None else dim <= DENSE_MAX_DIMENSION
        self.dense_mass = dense

        def init_chain(data, start, k):
            """One chain's state before its first iteration: jittered warm start, Hessian mass matrix."""
            k_jit, k_chain = jax.random.split(k)
            leaves, tree = jax.tree_util.tree_flatten(start)
            noise = jax.random.split(k_jit, len(leaves))
            z0 = jax.tree_util.tree_unflatten(
                tree,
                [v + config.init_jitter * jax.random.normal(kk, jnp.shape(v), jnp.result_type(v)) for v, kk in zip(leaves, noise)],
            )
            return init_kernel(
                z0,
                config.warmup,
                inverse_mass_matrix=_initial_inverse_mass(hessian_gen(data), z0, dense),
                target_accept_prob=config.target_accept,
                max_tree_depth=config.max_tree_depth,
                dense_mass=dense,
                model_args=(data,),
                rng_key=k_chain,
            )

        def step(data, st):
            return sample_kernel(st, model_args=(data,))

        def draws(data, zs):
            return jax.vmap(jax.vmap(postprocess_gen(data)))(zs)  # (chain, draw) axes

        self._kernels = (self._mapped(init_chain, (None, None, 0)), step, jax.jit(draws))

    def _start(self, data: TrialData, latent: dict) -> dict:
        return unconstrain_fn(self.spec.numpyro_model, (data,), {}, latent)

    def _mapped(self, f, in_axes):
        """``f`` over chains (the arguments with axis 0): pmapped, vmapped or looped by chain method."""
        if self.chain_method == "parallel":
            return jax.pmap(f, in_axes=in_axes)
        if self.chain_method == "vectorized":
            return jax.jit(jax.vmap(f, in_axes=in_axes))
        single = jax.jit(f)

        def looped(*args):
            n = jax.tree_util.tree_leaves([a for a, ax in zip(args, in_axes) if ax == 0])[0].shape[0]
            outs = [single(*(a if ax is None else jax.tree_util.tree_map(lambda v, c=c: v[c], a) for a, ax in zip(args, in_axes))) for c in range(n)]
            return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *outs)

        return looped

    def _advance_fn(self, length: int):
        """``(data, states, n) -> (states, (z, stats))``: ``n ≤ length`` iterations of every chain, one compiled program."""
        if length not in self._advance:
            step = self._kernels[1]

            def advance(data, st, n):
                def body(st, i):  # iterations past n leave the state as it is (their outputs are dropped)
                    st = jax.lax.cond(i < n, lambda s: step(data, s), lambda s: s, st)
                    stats = (st.diverging, st.num_steps, st.accept_prob, st.potential_energy, st.energy, st.adapt_state.step_size)
                    return st, (st.z, stats)

                return jax.lax.scan(body, st, jnp.arange(length))

            self._advance[length] = self._mapped(advance, (None, 0, None))
        return self._advance[length]

    def run(
        self,
        data: TrialData,
        latent: dict,
        key: PRNGKeyArray,
        chains: Sequence[int] | None = None,
        *,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 50,
        resume: bool = False,
        progress: bool = False,
    ):
        """Sample one dataset; returns (draws by site with (chain, draw) axes, sample stats, seconds).

        ``chains`` selects which of the ``config.chains`` chains to run (default: all). Chain ``c``
        always uses the same key, so running a subset (one process's share of a distributed run)
        gives exactly the draws those chains have in a full run with the same chain method.

        With ``checkpoint``, warmup and sampling run in chunks of ``checkpoint_every`` iterations and
        after each the chains' states and the draws so far are written there; ``resume`` continues
        from it. A Ctrl-C (``KeyboardInterrupt``)
        keeps the last completed chunk in the checkpoint, warns how to resume and goes on up.
        ``progress`` draws a bar over the iterations (see :func:`plasticinfer._progress.show_progress`);
        without a checkpoint it cuts the run into about 20 chunks for it (the same draws).
        """
        from tqdm.auto import tqdm

        from .. import _interrupt

        config = self.config
        check_checkpoint_options(checkpoint, checkpoint_every, resume)
        total = config.warmup + config.samples
        bar = show_progress(progress)
        every = checkpoint_every if checkpoint is not None else (max(1, -(-total // 20)) if bar else total)
        k_setup, k_run = jax.random.split(key)
        chain_keys = jax.random.split(k_run, config.chains)
        if chains is not None:
            chain_keys = chain_keys[np.asarray(chains, dtype=np.int64)]
        t0 = time.perf_counter()
        with jax.numpy_dtype_promotion("standard"):  # NumPyro's internals mix int and float under x64
            if self._kernels is None:
                self._build(data, latent, k_setup)
            init, _, to_draws = self._kernels
            stored = None
            if checkpoint is not None:
                fp = fingerprint(
                    "NUTS", data, latent, jax.random.key_data(chain_keys), self.spec.template, self.spec.priors,
                    self.spec.hierarchical, self.spec.checkpoint, config, self.chain_method,
                )  # fmt: skip
                if resume and Path(checkpoint).exists():  # checked before the sampler is compiled
                    stored = read_checkpoint(checkpoint, fp, _IDENTITY)
            advance = self._advance_fn(min(every, total))
            state = init(data, self._start(data, latent), chain_keys)
            zs, stats, done, earlier = [], [], 0, 0.0
            if stored is not None:
                state, zs, stats, done, earlier = self._restore(checkpoint, *stored, state, total)
            interrupted = False
            desc = f"NUTS ({len(chain_keys)} chain{'s' if len(chain_keys) != 1 else ''}, {config.warmup} warmup + {config.samples} draws)"
            with tqdm(total=total, initial=done, desc=desc, unit="it", disable=not bar, leave=False) as pbar:
                while done < total:
                    n = min(every - done % every, total - done)
                    try:
                        new_state, (z, st) = advance(data, state, jnp.asarray(n))
                        z = jax.tree_util.tree_map(lambda a, n=n: np.asarray(a)[:, :n], z)
                        st = tuple(np.asarray(a)[:, :n] for a in st)
                    except KeyboardInterrupt:
                        interrupted = True
                        break
                    state, done = new_state, done + n
                    zs.append(z)
                    stats.append(st)
                    pbar.update(n)
                    pbar.set_postfix_str("warmup" if done < config.warmup else "sampling", refresh=False)
                    if checkpoint is not None:
                        self._save(checkpoint, state, zs, stats, done, earlier + time.perf_counter() - t0, fp)
                    if _interrupt.count():  # a Ctrl-C on the command line whose KeyboardInterrupt was swallowed elsewhere
                        interrupted = done < total
                        break
            if interrupted:
                _warn(
                    f"NUTS interrupted after {done} of {total} iterations (warmup and draws) per chain; "
                    + (
                        f"the state after iteration {done} is saved in {checkpoint}; the same call with resume=True continues it"
                        if checkpoint is not None
                        else "nothing was saved (pass checkpoint=PATH to make a long run resumable)"
                    ),
                    InterruptedWarning,
                )
                raise KeyboardInterrupt
            z_all = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=1), *zs)
            stats = tuple(np.concatenate(a, axis=1) for a in zip(*stats))
            draws = to_draws(data, jax.tree_util.tree_map(lambda a: jnp.asarray(a[:, config.warmup :]), z_all))
            jax.block_until_ready(draws)
        seconds = earlier + time.perf_counter() - t0
        w = config.warmup
        self.warmup_stats = self._stats(tuple(a[:, :w] for a in stats))
        return {k: np.asarray(v) for k, v in draws.items()}, self._stats(tuple(a[:, w:] for a in stats)), seconds

    @staticmethod
    def _save(path, state, zs, stats, done, seconds, fp) -> None:
        z_all = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=1), *zs)
        parts = {"state": state, "z": jax.tree_util.tree_leaves(z_all), "stats": [np.concatenate(a, axis=1) for a in zip(*stats)]}
        save_checkpoint(path, parts, {"fingerprint": fp, "done": done, "seconds": seconds})

    @staticmethod
    def _restore(path, parts, header, like_state, total):
        """The state, draws, stats, iterations done and seconds spent in a checkpoint's run."""
        state = as_tree(path, "state", parts.get("state", []), like_state)
        done = int(header.get("done", -1))
        z, st = parts.get("z", []), parts.get("stats", [])
        n_sites = jax.tree_util.tree_structure(like_state.z).num_leaves
        if not 0 < done <= total or len(st) != 6 or len(z) != n_sites or any(np.ndim(a) < 2 or np.shape(a)[1] != done for a in z + st):
            raise DataError(f"{path}: checkpoint holds an inconsistent number of iterations; delete it to start afresh")
        z = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like_state.z), z)
        return state, [z], [tuple(st)], done, float(header.get("seconds", 0.0))

    def _stats(self, stats) -> dict:
        diverging, n_steps, accept, potential, energy, step_size = (np.asarray(s) for s in stats)
        return {
            "diverging": diverging.astype(bool),
            "n_steps": n_steps,
            "tree_depth": np.floor(np.log2(np.maximum(n_steps, 1))).astype(np.int64) + 1,
            "reached_max_treedepth": n_steps >= 2**self.config.max_tree_depth - 1,
            "acceptance_rate": accept,
            "lp": -potential,
            "energy": energy,
            "step_size": step_size,
        }


__all__ = ["DENSE_MAX_DIMENSION", "HESSIAN_MAX_DIMENSION", "NUTS", "NUTSRunner"]
