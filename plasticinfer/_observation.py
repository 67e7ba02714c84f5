"""Observation models: the likelihood of what was measured given the network's output."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._errors import ModelError

_LOG_2PI = 1.8378770664093453


def _check_parameter(value, what: str, *, positive: bool) -> None:
    """Refuse a non-finite (or, with ``positive``, a non-positive) parameter given by the user.

    Inside a JAX transformation the value is a tracer and cannot be checked; it passes.
    """
    try:
        v = np.asarray(value, dtype=float)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    except (TypeError, ValueError):
        raise ModelError(f"{what} must be a number or an array of numbers; got {value!r}") from None
    bad = ~np.isfinite(v) | ((v <= 0) if positive else False)
    if np.any(bad):
        need = "positive and finite" if positive else "finite"
        raise ModelError(f"{what} must be {need}; got {value!r}")


class AbstractObservationModel(eqx.Module):
    """Turns a network output into a distribution over the measurement."""

    @abc.abstractmethod
    def log_prob(self, output: Array, observation: Array) -> Array:
        """Elementwise log-probability, broadcast to ``observation``'s shape."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, output: Array) -> Array:
        """Draw a measurement."""

    def penalty(self) -> Float[Array, ""]:
        return jnp.zeros(())

    def held_fields(self) -> frozenset[str]:
        """Fields a fit leaves unchanged (their gradient is stopped): not parameters, so neither sampled nor
        counted in AIC/BIC. None by default."""
        return frozenset()

    def check_data(self, output_shape: tuple[int, ...], observations, mask, name: str = "data") -> None:
        """Refuse data this model cannot score, with a :class:`ModelError` that says what is wrong.

        Called by ``fit``, ``fit_independent`` and ``bayes.sample`` before any work, with the
        network's output shape for one trial and the data's ``(trajectory, trial, ...)``
        observations and mask (NumPy arrays). The default checks that :meth:`log_prob` accepts
        one trial's output and observation; subclasses add what their likelihood needs (shapes
        that match exactly, the values a distribution has support on).
        """
        obs = jax.ShapeDtypeStruct(tuple(observations.shape[2:]), observations.dtype)
        out = jax.ShapeDtypeStruct(tuple(output_shape), jnp.result_type(float))
        try:
            jax.eval_shape(self.log_prob, out, obs)
        except (TypeError, ValueError) as e:
            raise ModelError(
                f"{type(self).__name__} cannot score {name}: the network's output per trial has shape "
                f"{tuple(output_shape)} and an observation has shape {tuple(observations.shape[2:])} "
                f"({str(e).splitlines()[0]}); build the network with the data's sizes"
            ) from None

    def _check_same_shape(self, output_shape, observations, name, what):
        if tuple(output_shape) != tuple(observations.shape[2:]):
            raise ModelError(
                f"{name}: the network's output per trial has shape {tuple(output_shape)} but the {what} per trial "
                f"have shape {tuple(observations.shape[2:])}; build the network with the data's sizes "
                f"(e.g. FeedForward(n_pre, {observations.shape[-1] if observations.ndim > 2 else 1}))"
            )

    def trial_log_prob(self, output, observation, mask) -> Float[Array, ""]:
        """Log-probability of one trial's observation, summed over masked-in entries.

        Masked-out entries (unrecorded neurons, padded trials) are replaced before the
        density is evaluated, so NaNs there never reach values or gradients.
        """
        mask = jnp.broadcast_to(mask, observation.shape)
        safe_obs = jnp.where(mask, observation, jnp.zeros((), observation.dtype))
        lp = self.log_prob(output, safe_obs)
        return jnp.sum(jnp.where(mask, lp, jnp.zeros((), lp.dtype)))


class GaussianActivity(AbstractObservationModel):
    """Recorded activity = network activity + N(0, σ²) noise; σ per neuron or shared, fitted by default.

    Attributes:
        log_sigma: log of the noise scale (a scalar, or one entry per neuron).
        learn_sigma: whether a fit may change σ.
    """

    log_sigma: Float[Array, "..."]
    learn_sigma: bool = eqx.field(static=True)

    def __init__(self, sigma: float | Array = 0.1, *, learn_sigma: bool = True):
        _check_parameter(sigma, "GaussianActivity: the noise scale sigma", positive=True)
        self.log_sigma = jnp.log(jnp.asarray(sigma, dtype=float))
        self.learn_sigma = learn_sigma

    @property
    def sigma(self) -> Array:
        ls = self.log_sigma if self.learn_sigma else jax.lax.stop_gradient(self.log_sigma)
        return jnp.exp(ls)

    def held_fields(self) -> frozenset[str]:
        return frozenset() if self.learn_sigma else frozenset({"log_sigma"})

    def log_prob(self, output, observation):
        sigma = self.sigma
        z = (observation - output) / sigma
        return -0.5 * z * z - jnp.log(sigma) - 0.5 * _LOG_2PI

    def sample(self, key, output):
        return output + self.sigma * jax.random.normal(key, output.shape, output.dtype)

    def check_data(self, output_shape, observations, mask, name="data"):
        sigma_shape = tuple(np.shape(self.log_sigma))
        if sigma_shape and (len(sigma_shape) > len(output_shape) or any(
                s not in (1, o) for s, o in zip(sigma_shape[::-1], tuple(output_shape)[::-1]))):
            raise ModelError(
                f"GaussianActivity has one sigma per neuron of shape {sigma_shape}, but the network gives {tuple(output_shape)} "
                f"outputs per trial; give a scalar sigma or one per output neuron ({tuple(output_shape)[-1:]})"
            )
        self._check_same_shape(output_shape, observations, name, "recorded activities")
        super().check_data(output_shape, observations, mask, name)


class BernoulliChoice(AbstractObservationModel):
    """Binary choice (option 1 vs option 0) from the network's drives.

    P(choice = 1) = ε/2 + (1 − ε)·sigmoid(β·(d₁ − d₀) + bias), with inverse temperature β and
    bias fitted and a fixed lapse rate ε (default 0: no lapses). A lapse rate bounds the cost of
    one surprising choice at log(ε/2), so a model that extrapolates badly cannot score −∞.
    The observation is the chosen option's index (0 or 1).
    """

    log_inverse_temperature: Float[Array, ""]
    bias: Float[Array, ""]
    learn_temperature: bool = eqx.field(static=True)
    lapse: float = eqx.field(static=True)

    def __init__(
        self, inverse_temperature: float = 1.0, bias: float = 0.0, *, learn_temperature: bool = True, lapse: float = 0.0
    ):
        if not 0.0 <= lapse < 1.0:
            raise ModelError(f"BernoulliChoice: lapse must be in [0, 1); got {lapse}")
        _check_parameter(inverse_temperature, "BernoulliChoice: inverse_temperature", positive=True)
        _check_parameter(bias, "BernoulliChoice: bias", positive=False)
        self.log_inverse_temperature = jnp.log(jnp.asarray(inverse_temperature, dtype=float))
        self.bias = jnp.asarray(bias, dtype=float)
        self.learn_temperature = learn_temperature
        self.lapse = float(lapse)

    @property
    def inverse_temperature(self) -> Array:
        lt = self.log_inverse_temperature
        return jnp.exp(lt if self.learn_temperature else jax.lax.stop_gradient(lt))

    def held_fields(self) -> frozenset[str]:
        return frozenset() if self.learn_temperature else frozenset({"log_inverse_temperature"})

    def logit(self, drives: Array) -> Array:
        return self.inverse_temperature * (drives[..., 1] - drives[..., 0]) + self.bias

    def probability(self, drives: Array) -> Array:
        """P(choice = 1) for each trial."""
        return self.lapse / 2 + (1 - self.lapse) * jax.nn.sigmoid(self.logit(drives))

    def _log_p(self, logit):
        lp = jax.nn.log_sigmoid(logit)
        if self.lapse == 0.0:
            return lp
        return jnp.logaddexp(jnp.log(self.lapse / 2), jnp.log1p(-self.lapse) + lp)

    def log_prob(self, output, observation):
        logit = self.logit(output)
        obs = observation.astype(logit.dtype)
        return obs * self._log_p(logit) + (1 - obs) * self._log_p(-logit)

    def sample(self, key, output):
        return jax.random.bernoulli(key, self.probability(output)).astype(jnp.int32)

    def check_data(self, output_shape, observations, mask, name="data"):
        if len(output_shape) == 0 or output_shape[-1] != 2:
            raise ModelError(
                f"BernoulliChoice scores a choice between two options, but the network gives {tuple(output_shape)} "
                f"drives per trial; use a two-option network (ChoiceCircuit(2)) and two-option data"
            )
        obs = np.asarray(observations)
        m = np.broadcast_to(np.asarray(mask), obs.shape)
        bad = m & ~np.isin(obs, (0, 1))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ModelError(
                f"BernoulliChoice scores choices coded 0 or 1, but {name} has choice {obs[idx].item()!r} at (trajectory, trial) "
                f"= {idx[:2]}; these data have more than two options (or other codes), which the binary choice model "
                "cannot score — keep two options, or recode the choices as 0/1"
            )
        super().check_data(output_shape, observations, mask, name)


class PoissonCounts(AbstractObservationModel):
    """Spike counts ~ Poisson(rate · dt) with rate = softplus(activity) (a non-negative link)."""

    dt: float = eqx.field(static=True, default=1.0)

    def rate(self, output):
        return jax.nn.softplus(output) * self.dt

    def log_prob(self, output, observation):
        lam = self.rate(output)
        return observation * self.log_rate(output) - lam - jax.scipy.special.gammaln(observation + 1.0)

    def log_rate(self, output):
        """log(rate), exact for very negative activity too (softplus(a) → e^a, so log → a + log dt; a floor
        such as log(rate + 1e-12) would stop at −27.6 and cut its gradient)."""
        safe = jnp.maximum(output, -30.0)
        return jnp.where(output < -30.0, output, jnp.log(jax.nn.softplus(safe))) + jnp.log(self.dt)

    def __check_init__(self):
        _check_parameter(self.dt, "PoissonCounts: the bin width dt", positive=True)

    def sample(self, key, output):
        return jax.random.poisson(key, self.rate(output), output.shape).astype(output.dtype)

    def check_data(self, output_shape, observations, mask, name="data"):
        self._check_same_shape(output_shape, observations, name, "spike counts")
        obs = np.asarray(observations)
        m = np.broadcast_to(np.asarray(mask), obs.shape)
        bad = m & ~((obs >= 0) & (np.floor(obs) == obs))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ModelError(
                f"PoissonCounts scores spike counts (non-negative integers), but {name} has {obs[idx].item()!r} at "
                f"(trajectory, trial, ...) = {idx}; use GaussianActivity for continuous activity"
            )
        super().check_data(output_shape, observations, mask, name)
