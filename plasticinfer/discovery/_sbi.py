"""Neural posterior estimation (NPE) with a normalizing flow, and its checks (SBC ranks, coverage, predictive rates).

A *family* of rules is a posterior: the distribution of rule parameters θ given that the
network's summary statistics look like ``x_obs``. NPE trains a conditional density
estimator q(θ | x) on pairs (θ ~ prior, x = simulator(θ)) and reads the posterior off at
``x_obs`` (Papamakarios & Murray 2016; Greenberg et al. 2019). The estimator is a masked
autoregressive flow from flowjax (Equinox-native, so it lives in the same pytrees, jit and
vmap as the simulator). The flow works on an unconstrained copy of θ (the prior's bijection:
logit for a box, identity for a Gaussian), so posterior samples always respect the prior's
support; summaries and parameters are standardised before training.

Simulations are run in fixed-size batches through ``jit(vmap(simulator))`` (one compilation;
the last batch is padded) and, with more than one device, the batch axis is sharded over them.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._common import DiscoveryError

Simulator = Callable[[Array, PRNGKeyArray], Array]  # θ (d,), key -> summaries (m,)


class AbstractSBIPrior(eqx.Module):
    """A prior over a parameter vector, with a bijection onto an unconstrained space."""

    names: tuple[str, ...] = eqx.field(static=True)

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]: ...

    @abc.abstractmethod
    def to_unconstrained(self, theta): ...

    @abc.abstractmethod
    def from_unconstrained(self, z): ...

    @abc.abstractmethod
    def contains(self, theta) -> Array:
        """Whether each θ (leading axes) lies in the prior's support."""

    @property
    def dim(self) -> int:
        return len(self.names)


class BoxPrior(AbstractSBIPrior):
    """Independent uniform priors on [low, high] per parameter (logit bijection)."""

    low: Float[Array, " d"]
    high: Float[Array, " d"]

    def __init__(self, names: Sequence[str], low, high):
        self.names = tuple(names)
        self.low = jnp.asarray(low, dtype=jnp.result_type(float))
        self.high = jnp.asarray(high, dtype=jnp.result_type(float))
        if self.low.shape != (len(self.names),) or self.high.shape != self.low.shape:
            raise DiscoveryError(f"BoxPrior needs one low and one high bound per name ({len(self.names)}); got {self.low.shape}, {self.high.shape}")
        if not bool(jnp.all(self.high > self.low)):
            bad = [n for n, lo, hi in zip(self.names, np.asarray(self.low), np.asarray(self.high)) if not hi > lo]
            raise DiscoveryError(f"BoxPrior bounds must satisfy low < high; not so for {bad}")

    def sample(self, key, n):
        return jax.random.uniform(key, (n, self.dim), self.low.dtype, self.low, self.high)

    def to_unconstrained(self, theta):
        u = jnp.clip((theta - self.low) / (self.high - self.low), 1e-9, 1 - 1e-9)
        return jnp.log(u) - jnp.log1p(-u)

    def from_unconstrained(self, z):
        return self.low + (self.high - self.low) * jax.nn.sigmoid(z)

    def contains(self, theta):
        return jnp.all((theta >= self.low) & (theta <= self.high), axis=-1)


class GaussianPrior(AbstractSBIPrior):
    """Independent normal priors N(mean, sd²) (identity bijection)."""

    mean: Float[Array, " d"]
    sd: Float[Array, " d"]

    def __init__(self, names: Sequence[str], mean, sd):
        self.names = tuple(names)
        self.mean = jnp.asarray(mean, dtype=jnp.result_type(float))
        self.sd = jnp.asarray(sd, dtype=jnp.result_type(float))
        if not bool(jnp.all(self.sd > 0)):
            raise DiscoveryError("GaussianPrior standard deviations must be positive")

    def sample(self, key, n):
        return self.mean + self.sd * jax.random.normal(key, (n, self.dim), self.mean.dtype)

    def to_unconstrained(self, theta):
        return theta

    def from_unconstrained(self, z):
        return z

    def contains(self, theta):
        return jnp.all(jnp.isfinite(theta), axis=-1)


@eqx.filter_jit
def _run_batch(simulator, theta, keys):
    # one compiled batch per simulator and shape, reused across calls (a bound method of a Module is a pytree)
    return jax.vmap(simulator)(theta, keys)


def simulate_batched(simulator: Simulator, theta, key: PRNGKeyArray, *, batch_size: int = 64) -> np.ndarray:
    """``simulator`` on every row of ``theta`` (own key each), in batches of ``batch_size`` via jit(vmap); (n, m) NumPy array.

    With several devices, each batch is sharded over them along its first axis.
    """
    theta = jnp.asarray(theta)
    n = theta.shape[0]
    keys = jax.random.split(key, n)
    devices = jax.devices()
    sharding = None
    if len(devices) > 1 and batch_size % len(devices) == 0:
        mesh = jax.sharding.Mesh(np.asarray(devices), ("batch",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    out = []
    for start in range(0, n, batch_size):
        th, k = theta[start : start + batch_size], keys[start : start + batch_size]
        m = th.shape[0]
        if m < batch_size:  # pad: one compiled shape
            th = jnp.concatenate([th, jnp.broadcast_to(th[:1], (batch_size - m, th.shape[1]))])
            k = jnp.concatenate([k, jnp.broadcast_to(k[:1], (batch_size - m,))])
        if sharding is not None:
            th, k = jax.device_put(th, sharding), jax.device_put(k, sharding)
        out.append(np.asarray(_run_batch(simulator, th, k))[:m])
    return np.concatenate(out)


class NPEPosterior(eqx.Module):
    """q(θ | x): a conditional flow on the standardised unconstrained parameters given standardised summaries."""

    flow: eqx.Module
    prior: AbstractSBIPrior
    x_mean: Array
    x_std: Array
    z_mean: Array
    z_std: Array
    flow_layers: int = eqx.field(static=True, default=5)  # how the flow was built (see _flow), so a file can rebuild it
    nn_width: int = eqx.field(static=True, default=64)

    def sample(self, key: PRNGKeyArray, x_obs, n: int) -> Float[Array, "n d"]:
        """``n`` posterior samples of θ at the summaries ``x_obs`` (m,)."""
        x = (jnp.asarray(x_obs, self.x_mean.dtype) - self.x_mean) / self.x_std
        with jax.numpy_dtype_promotion("standard"):
            z = self.flow.sample(key, (n,), condition=x)
        return self.prior.from_unconstrained(z * self.z_std + self.z_mean)

    def sample_many(self, key: PRNGKeyArray, x_obs, n: int) -> Float[Array, "obs n d"]:
        """``n`` samples at each row of ``x_obs`` (obs, m)."""
        keys = jax.random.split(key, x_obs.shape[0])
        return jax.vmap(lambda k, x: self.sample(k, x, n))(keys, jnp.asarray(x_obs))


@dataclass
class NPEResult:
    """Trained posterior estimator and the simulations behind it.

    ``loss_history`` and ``validation_history`` are the flow's training and held-out negative
    log-likelihood per epoch (flowjax's ``fit_to_data``; the field names of ``FitResult``).
    """

    posterior: NPEPosterior
    theta: np.ndarray  # (n, d) prior draws used for training
    x: np.ndarray  # (n, m) their summaries
    dropped: int  # simulations with non-finite summaries (not used)
    simulation_seconds: float
    training_seconds: float
    loss_history: np.ndarray
    validation_history: np.ndarray

    @property
    def simulations_per_minute(self) -> float:
        return 60.0 * len(self.theta) / max(self.simulation_seconds, 1e-9)

    def to_dataset(self):
        """The content of the file :meth:`save` writes (format ``plasticinfer-npe/1``): every array of the
        posterior (the flow's weights and masks, the prior, the standardisation) as ``posterior.<path>``, the prior's
        class (``prior_structure``), ``theta`` (simulation, parameter), ``x`` (simulation, summary),
        ``loss_history`` and ``validation_history`` per epoch; attributes ``flow_layers``, ``nn_width`` (how to
        rebuild the flow), ``dropped``. No code and no wall times are stored (the same run saves the same bytes; a
        loaded result's ``simulation_seconds`` and ``training_seconds`` are NaN)."""
        import xarray as xr

        from .._results_io import encode_structure, model_variables, tagged, to_json

        p = self.posterior
        ds = xr.Dataset(
            {
                **model_variables(p, prefix="posterior."),
                "theta": (("simulation", "parameter"), np.asarray(self.theta)),
                "x": (("simulation", "summary"), np.asarray(self.x)),
                "loss_history": ("epoch", np.asarray(self.loss_history)),
                "validation_history": ("validation_epoch", np.asarray(self.validation_history)),
            },
            coords={"parameter": list(p.prior.names)},
            attrs={
                "prior_structure": to_json(encode_structure(p.prior, "prior")),
                "flow_layers": int(p.flow_layers),
                "nn_width": int(p.nn_width),
                "dropped": int(self.dropped),
            },
        )
        return tagged(ds, "npe")

    def save(self, path):
        """Write the result to one self-describing netCDF file, atomically (see :meth:`to_dataset`)."""
        from .._io import write_netcdf

        return write_netcdf(self.to_dataset(), path)

    @classmethod
    def load(cls, path) -> "NPEResult":
        """Read a file written by :meth:`save`: the flow is rebuilt as :func:`train_npe` builds it and filled with
        the stored arrays (exactly, dtypes kept). Any other file is refused with one
        :class:`~plasticinfer.DataError` naming the kind it holds."""
        from .._results_io import read_result, reading

        ds = read_result(path, "npe")
        with reading(path, "posterior-estimation result"):
            return cls.from_dataset(ds, path)

    @classmethod
    def from_dataset(cls, ds, source="the file") -> "NPEResult":
        import json

        from .._errors import DataError
        from .._results_io import fill_like, named_leaves, rebuild

        stored = {str(k)[len("posterior."):]: ds[k].values for k in ds.data_vars if str(k).startswith("posterior.")}
        prior = rebuild(json.loads(ds.attrs["prior_structure"]), stored, source)
        layers, width = int(ds.attrs["flow_layers"]), int(ds.attrs["nn_width"])
        z_mean = stored["z_mean"]
        flow = _flow(jax.random.key(0), z_mean.shape[0], stored["x_mean"].shape[0], layers, width, z_mean.dtype)
        std = [jnp.asarray(stored[n]) for n in ("x_mean", "x_std", "z_mean", "z_std")]
        template = NPEPosterior(flow, prior, *std, layers, width)
        wanted = {n: np.shape(v) for n, v in named_leaves(template).items()}
        found = {n: np.shape(v) for n, v in stored.items()}
        if wanted != found:
            diff = sorted(set(wanted.items()) ^ set(found.items()))[:6]
            raise DataError(f"{source}: the stored flow does not match the flow train_npe builds (differences: {diff}); "
                            "was it written by another version of plasticinfer or flowjax?")  # fmt: skip
        return cls(
            posterior=fill_like(template, ds, "posterior.", cast=False),
            theta=ds["theta"].values,
            x=ds["x"].values,
            dropped=int(ds.attrs["dropped"]),
            simulation_seconds=float(ds.attrs.get("simulation_seconds", np.nan)),
            training_seconds=float(ds.attrs.get("training_seconds", np.nan)),
            loss_history=ds["loss_history"].values,
            validation_history=ds["validation_history"].values,
        )


def train_npe(
    key: PRNGKeyArray,
    theta,
    x,
    prior: AbstractSBIPrior,
    *,
    flow_layers: int = 5,
    nn_width: int = 64,
    learning_rate: float = 1e-3,
    max_epochs: int = 300,
    max_patience: int = 10,
    batch_size: int = 128,
) -> tuple[NPEPosterior, dict]:
    """Fit q(θ | x) by maximum likelihood on simulated pairs (rows with non-finite x are the caller's to drop)."""
    from flowjax.train import fit_to_data

    theta, x = jnp.asarray(theta), jnp.asarray(x)
    if theta.ndim != 2 or x.ndim != 2 or theta.shape[0] != x.shape[0]:
        raise DiscoveryError(f"train_npe needs theta (n, d) and x (n, m) with the same n; got {theta.shape}, {x.shape}")
    if theta.shape[0] < 20:
        raise DiscoveryError(f"train_npe needs at least 20 simulations; got {theta.shape[0]}")
    z = prior.to_unconstrained(theta)
    x_mean, x_std = jnp.mean(x, 0), jnp.std(x, 0) + 1e-8
    z_mean, z_std = jnp.mean(z, 0), jnp.std(z, 0) + 1e-8
    zs, xs = (z - z_mean) / z_std, (x - x_mean) / x_std
    k_flow, k_fit = jax.random.split(key)
    flow = _flow(k_flow, theta.shape[1], x.shape[1], flow_layers, nn_width, zs.dtype)
    with jax.numpy_dtype_promotion("standard"):  # optax/flowjax mix int counters and floats under x64
        flow, losses = fit_to_data(
            k_fit, flow, (zs, xs), learning_rate=learning_rate, max_epochs=max_epochs, max_patience=max_patience,
            batch_size=min(batch_size, max(8, int(0.9 * zs.shape[0]) // 2)), show_progress=False,
        )  # fmt: skip
    posterior = NPEPosterior(flow, prior, x_mean, x_std, z_mean, z_std, flow_layers, nn_width)
    return posterior, {k: np.asarray(v) for k, v in losses.items()}


def _flow(key: PRNGKeyArray, dim: int, cond_dim: int, flow_layers: int, nn_width: int, dtype):
    """The untrained conditional flow of :func:`train_npe` (also the template :meth:`NPEResult.load` fills)."""
    from flowjax.distributions import Normal
    from flowjax.flows import masked_autoregressive_flow

    with jax.numpy_dtype_promotion("standard"):
        return masked_autoregressive_flow(
            key, base_dist=Normal(jnp.zeros(dim, dtype)), cond_dim=cond_dim, flow_layers=flow_layers, nn_width=nn_width
        )


def run_npe(
    key: PRNGKeyArray,
    simulator: Simulator,
    prior: AbstractSBIPrior,
    *,
    n_simulations: int,
    batch_size: int = 64,
    **train_kwargs,
) -> NPEResult:
    """Draw ``n_simulations`` θ from the prior, simulate them (batched), train NPE on the finite ones."""
    if n_simulations < 20:
        raise DiscoveryError(f"run_npe needs at least 20 simulations (n_simulations); got {n_simulations}")
    k_prior, k_sim, k_train = jax.random.split(key, 3)
    theta = np.asarray(prior.sample(k_prior, n_simulations))
    t0 = time.perf_counter()
    x = simulate_batched(simulator, theta, k_sim, batch_size=batch_size)
    t_sim = time.perf_counter() - t0
    ok = np.all(np.isfinite(x), axis=1)
    if ok.sum() < 20:
        raise DiscoveryError(f"only {ok.sum()} of {n_simulations} simulations gave finite summaries; check the simulator and prior")
    t0 = time.perf_counter()
    posterior, losses = train_npe(k_train, theta[ok], x[ok], prior, **train_kwargs)
    seconds = time.perf_counter() - t0
    return NPEResult(posterior, theta[ok], x[ok], int((~ok).sum()), t_sim, seconds, losses["train"], losses["val"])


@dataclass
class SBCResult:
    """Simulation-based calibration: ranks of the true θ among posterior samples, and interval coverage."""

    ranks: np.ndarray  # (test, d), each in 0..n_samples
    n_samples: int
    coverage: dict[float, np.ndarray]  # level -> per-parameter fraction of true θ inside the central interval
    names: tuple[str, ...]

    def to_dataset(self):
        """The content of the file :meth:`save` writes (format ``plasticinfer-sbc/1``): ``ranks`` (test, parameter),
        ``coverage`` (level, parameter); attribute ``n_samples``."""
        import xarray as xr

        from .._results_io import tagged

        levels = list(self.coverage)
        ds = xr.Dataset(
            {
                "ranks": (("test", "parameter"), np.asarray(self.ranks)),
                "coverage": (("level", "parameter"), np.asarray([self.coverage[lv] for lv in levels], dtype=float).reshape(len(levels), len(self.names))),
            },
            coords={"parameter": list(self.names), "level": np.asarray(levels, dtype=float)},
            attrs={"n_samples": int(self.n_samples)},
        )  # fmt: skip
        return tagged(ds, "sbc")

    def save(self, path):
        """Write the result to one self-describing netCDF file, atomically (see :meth:`to_dataset`)."""
        from .._io import write_netcdf

        return write_netcdf(self.to_dataset(), path)

    @classmethod
    def load(cls, path) -> "SBCResult":
        """Read a file written by :meth:`save`; any other file is refused with one :class:`~plasticinfer.DataError`."""
        from .._results_io import read_result, reading

        ds = read_result(path, "sbc")
        with reading(path, "calibration (SBC) result"):
            return cls.from_dataset(ds, path)

    @classmethod
    def from_dataset(cls, ds, source="the file") -> "SBCResult":
        coverage = {float(lv): ds["coverage"].values[i] for i, lv in enumerate(ds["level"].values)}
        names = tuple(str(n) for n in ds["parameter"].values)
        return cls(ds["ranks"].values, int(ds.attrs["n_samples"]), coverage, names)

    def uniformity_pvalues(self, bins: int = 10) -> np.ndarray:
        """χ² test p-value per parameter that the ranks are uniform (small: miscalibrated)."""
        from scipy.stats import chisquare

        edges = np.linspace(0, self.n_samples + 1, bins + 1)
        return np.array([chisquare(np.histogram(r, edges)[0]).pvalue for r in self.ranks.T])


def sbc(key: PRNGKeyArray, posterior: NPEPosterior, simulator: Simulator, *, n_tests: int = 100, n_samples: int = 200, levels=(0.5, 0.9), batch_size: int = 64) -> SBCResult:
    """SBC (Talts et al. 2018): θ* ~ prior, x* = simulator(θ*), rank of θ* among posterior samples at x*."""
    k_p, k_s, k_q = jax.random.split(key, 3)
    prior = posterior.prior
    theta = np.asarray(prior.sample(k_p, n_tests))
    x = simulate_batched(simulator, theta, k_s, batch_size=batch_size)
    ok = np.all(np.isfinite(x), axis=1)
    theta, x = theta[ok], x[ok]
    samples = np.asarray(eqx.filter_jit(lambda p, k, xx: p.sample_many(k, xx, n_samples))(posterior, k_q, jnp.asarray(x)))  # (test, n, d)
    ranks = (samples < theta[:, None, :]).sum(axis=1)
    coverage = {}
    for lv in levels:
        lo, hi = np.quantile(samples, [(1 - lv) / 2, (1 + lv) / 2], axis=1)
        coverage[float(lv)] = ((theta >= lo) & (theta <= hi)).mean(axis=0)
    return SBCResult(ranks, n_samples, coverage, prior.names)


__all__ = ["AbstractSBIPrior", "BoxPrior", "GaussianPrior", "NPEPosterior", "NPEResult", "SBCResult", "run_npe", "sbc", "simulate_batched", "train_npe"]
