"""`Posterior`: draws, diagnostics, summaries and models from a sampled posterior (an ArviZ InferenceData)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from .._errors import ModelError, PosteriorWarning
from .._errors import warn as _warn
from .._model import PlasticityModel
from .._results_io import fill_like, like_differences, reading, model_attrs, named_leaves, strip_addresses, term_names, to_json
from .._trial_data import TrialData
from . import _arviz
from ._numpyro_model import Hierarchical, ModelSpec
from ._priors import Priors

#: SVI's optimum check (``Posterior.svi_check``) flags a fitted spread more than this factor from its estimated optimum (either way) …
SPREAD_TOLERANCE = 1.2
#: … or a fitted mean more than this many posterior sds from its estimated optimum, …
LOCATION_TOLERANCE = 0.5
#: … or, for a full-covariance guide, a pair of its whitened (Cholesky) coordinates coupled by more than this
#: (where those coordinates' own readings are near 1, the spread along their sum or difference is then more than
#: SPREAD_TOLERANCE from the optimum's), …
COUPLING_TOLERANCE = 1 - 1 / SPREAD_TOLERANCE**2
#: … where the gradient behind it is this many standard errors from zero.
CHECK_MIN_Z = 4.0

RHAT_MAX = 1.01
ESS_MIN = 100


def _data_dims(name: str, a: np.ndarray, lead: str) -> list[str]:
    return [lead, "trial"] + [f"{name}_dim{k}" for k in range(2, a.ndim)]


@dataclass
class Posterior:
    """A sampled posterior.

    Attributes:
        idata: the ArviZ InferenceData: ``posterior`` (every site, ``theta`` with a ``term``
            coordinate), ``sample_stats`` (divergences, tree depth, step size, …),
            ``log_likelihood`` (``observations``: per subject and trial; ``per_subject``: summed
            over trials), ``observed_data`` (observations, mask) and ``constant_data`` (inputs).
        spec: the model structure and priors (``spec.template`` is the starting model).
        method: the ``NUTS`` or ``SVI`` settings used.
        seconds: wall time of the sampler (compilation included).
        loss_history: the ELBO loss per SVI step (SVI only; ``None`` for NUTS and for a loaded posterior).
    """

    idata: object
    spec: ModelSpec
    method: object
    seconds: float
    loss_history: np.ndarray | None = None
    _summary_cache: dict = field(default_factory=dict, repr=False)

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def build(cls, spec: ModelSpec, method, data: TrialData, draws: dict, stats: dict, ll: np.ndarray, seconds: float, *, svi=None):
        identity = np.array_equal(spec.subject_index, np.arange(spec.template.n_trajectories))
        lead = "subject" if identity else "trajectory"
        dims = spec.dims()
        groups = {g.name: g for g in spec.groups}
        for name, value in draws.items():  # latent sites of priors (horseshoe z, λ): the block's dims
            if name in dims:
                continue
            base = next((g for g in groups.values() if name.startswith(g.name + "_")), None)
            shape = np.asarray(value).shape[2:]
            if base is not None and shape == base.shape and base.shape:
                dims[name] = list(base.dims)
            elif base is not None and shape == (spec.n_subjects,) + base.shape:
                dims[name] = ["subject", *base.dims]
        for g in spec.groups:
            if g.part == "initial_weights":
                dims[g.name] = [lead, *g.dims[1:]]
        mask = np.asarray(np.broadcast_to(data.mask, data.observations.shape))
        obs = np.asarray(data.observations)
        dims.update({"observations": _data_dims("observations", obs, lead), "mask": _data_dims("observations", obs, lead)})
        dims["per_subject"] = [lead]
        constant = {}
        for name, value in data.inputs.items():
            a = np.asarray(value)
            constant[f"input_{name}"] = a
            dims[f"input_{name}"] = _data_dims(f"input_{name}", a, lead)
        valid_trial = mask.reshape(mask.shape[:2] + (-1,)).any(-1)
        constant["trial_valid"] = valid_trial
        dims["trial_valid"] = [lead, "trial"]
        # the model sampled (every array, held values included), as FitResult.save records a model: Posterior.load
        # checks like= against it
        for name, leaf in named_leaves(spec.template).items():
            a = np.asarray(leaf)
            constant[_MODEL + name] = a
            dims[_MODEL + name] = [f"{_MODEL}{name}.dim{k}" for k in range(a.ndim)]
        attrs = {
            "created_by": "plasticinfer",
            "inference_library": "numpyro",
            "method": strip_addresses(repr(method)),
            # no wall time (it is Posterior.seconds) and no creation time: the same run saves the same bytes
            "model": _describe_model(spec.template),
            **model_attrs(spec.template),
            "model_parameters": to_json({n: list(np.shape(v)) for n, v in named_leaves(spec.template).items()}),
            "model_terms": to_json(term_names(spec.template)),
            "priors": strip_addresses(repr(spec.priors)),
            "hierarchical": strip_addresses(repr(spec.hierarchical)),
            "prior_fingerprint": spec.prior_fingerprint(),
        }
        if svi is not None and svi.get("check") is not None:
            attrs["svi_check"] = to_json(svi["check"])
        idata = _arviz.to_inference_data(
            draws,
            sample_stats=stats,
            log_likelihood={"observations": ll, "per_subject": ll.sum(-1)},
            observed_data={"observations": obs, "mask": mask},
            constant_data=constant,
            dims=dims,
            coords=spec.coords(),
            attrs=attrs,
        )
        return cls(idata, spec, method, float(seconds), None if svi is None else svi["loss"])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        like: PlasticityModel,
        *,
        priors: Priors | None = None,
        hierarchical: Hierarchical | None = None,
    ) -> "Posterior":
        """Read a saved posterior; ``like``, ``priors`` and ``hierarchical`` as given to :func:`sample`.

        The file records the model that was sampled (its configuration and every array, the values held
        fixed included). ``like`` is checked against it and refused, with a :class:`DataError` naming each
        difference (trajectories, terms, parameter shapes, rule/network/observation settings, held values
        such as a fixed inverse temperature), if it is not that model. Files written before posteriors
        recorded their model are checked only for their trajectory count, terms and draw shapes. ``seconds`` of a loaded posterior
        is NaN: the file holds no wall time (so that the same run saves the same bytes).
        """
        from .._errors import DataError

        if not os.path.exists(path):
            raise DataError(f"{path}: no such file")
        from .._errors import FileFormatError
        from .._fit import check_model

        check_model(like, "Posterior.load (like=, the model given to sample)")
        from .._results_io import what_file_holds

        try:
            idata = _arviz.load(path)
        except Exception as e:  # ArviZ/h5py/xarray raise many types for a file that is not netCDF
            raise FileFormatError(
                f"{path}: could not be read as a posterior (ArviZ InferenceData in netCDF-4): {type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}. Is it a complete file written by Posterior.save?"
            ) from e
        if "posterior" not in idata.groups():
            try:
                from .._io import read_netcdf

                root = read_netcdf(path)
            except Exception:
                root = None
            raise DataError(
                f"{path}: not a plasticinfer posterior: the file holds {what_file_holds(root, path)}. "
                "Posterior.load reads files written by Posterior.save."
            )
        if idata.posterior.attrs.get("created_by") != "plasticinfer":
            raise DataError(f"{path}: not a plasticinfer posterior (no created_by attribute in its posterior group)")
        needed = {"log_likelihood": ("observations", "per_subject"), "observed_data": ("observations", "mask"),
                  "constant_data": ()}
        gone = []
        for g, variables in needed.items():
            if g not in idata.groups():
                gone.append(g)
            else:
                gone += [f"{g}.{v}" for v in variables if v not in getattr(idata, g)]
        if gone:
            raise FileFormatError(
                f"{path}: a damaged or incomplete posterior: {gone} missing (Posterior.save writes the groups "
                "posterior, log_likelihood, observed_data, constant_data and, for NUTS, sample_stats). Save it again or "
                "restore it from a copy."
            )
        spec = ModelSpec(like, priors if priors is not None else Priors(), hierarchical)
        with reading(path, "posterior"):
            stored = _stored_model(path, idata)  # read once, checked twice
            _check_model(path, idata, stored, like)
            _check_held_values(path, stored, like, spec)
        missing = [g.name for g in spec.groups if g.name not in idata.posterior]
        if missing:
            raise DataError(f"{path}: has no draws of {missing}; pass the model, priors and hierarchy it was sampled with")
        problems = []
        for dim, labels in spec.coords().items():
            stored = [str(v) for v in idata.posterior[dim].values] if dim in idata.posterior.coords else None
            if stored != [str(v) for v in labels]:
                problems.append(f"{dim}: file has {stored}, like= has {list(labels)}")
        pooled = getattr(spec, "pooled", ())
        for g in spec.groups:
            shape = tuple(idata.posterior[g.name].shape[2:])
            expected = ((spec.n_subjects,) if g.name in pooled else ()) + tuple(g.shape)
            if shape != expected:
                problems.append(f"{g.name}: file has draws of shape {shape}, like= expects {expected}")
        if problems:
            raise DataError(
                f"{path}: the stored posterior does not match the model given as like=:\n  - " + "\n  - ".join(problems)
                + "\nPass the model, priors and hierarchy it was sampled with."
            )
        stored = idata.posterior.attrs.get("prior_fingerprint")
        if stored is not None and stored != spec.prior_fingerprint():
            # contraction, identifiability and predictive checks are measured against the priors: reading the
            # draws against other priors would give wrong verdicts
            told = "given " + ", ".join(
                f"{k}={strip_addresses(repr(v))}" for k, v in (("priors", priors), ("hierarchical", hierarchical)) if v is not None
            ) if (priors is not None or hierarchical is not None) else "not given priors= or hierarchical= (the defaults)"
            raise DataError(
                f"{path}: the posterior was sampled with priors={idata.posterior.attrs.get('priors')} and "
                f"hierarchical={idata.posterior.attrs.get('hierarchical')}, but load was {told}; pass the priors and "
                "hierarchy given to sample (equivalent ones, however written, are accepted)."
            )
        # files written before posteriors were made deterministic hold the wall time
        return cls(idata, spec, idata.posterior.attrs.get("method", "?"), float(idata.posterior.attrs.get("seconds", np.nan)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the InferenceData to netCDF atomically; returns the path.

        The file is deterministic: the same run (same model, data, priors, settings and key) saves the
        same bytes. It holds no wall time (``seconds`` stays on this object) and no creation time.
        """
        return _arviz.save(self.idata, path)

    # ---- draws -----------------------------------------------------------------------------

    @property
    def n_chains(self) -> int:
        return int(self.idata.posterior.sizes["chain"])

    @property
    def n_draws(self) -> int:
        return int(self.idata.posterior.sizes["draw"])

    def draws(self, name: str) -> np.ndarray:
        """Draws of one posterior variable, shape (chain, draw, ...)."""
        if name not in self.idata.posterior:
            raise ModelError(f"no posterior variable {name!r}; variables are {sorted(self.idata.posterior.data_vars)}")
        return np.asarray(self.idata.posterior[name].values)

    @property
    def coefficients(self):
        """Draws of the Taylor coefficients (chain, draw, term) as an xarray DataArray.

        In a hierarchical fit these are the population means ``theta_mu``; per-subject values are
        in ``idata.posterior["theta"]``.
        """
        g = self._rule_group()
        name = f"{g.name}_mu" if g.name in self.spec.pooled else g.name
        return self.idata.posterior[name]

    def _rule_group(self):
        groups = [g for g in self.spec.groups if g.part == "rule" and g.labels is not None]
        if not groups:
            raise ModelError("the posterior has no sampled Taylor coefficients")
        return groups[0]

    def flat(self, names: list[str] | None = None) -> pd.DataFrame:
        """Draws of scalar parameters as columns (rows: chain × draw), e.g. ``theta[x*r]``."""
        names = names if names is not None else self._default_flat_names()
        cols = {}
        for name in names:
            a = self.draws(name)
            a = a.reshape(a.shape[:2] + (-1,))
            labels = _labels(self.idata.posterior[name], name)
            for j, lab in enumerate(labels):
                cols[lab] = a[:, :, j].ravel()
        return pd.DataFrame(cols)

    def _default_flat_names(self) -> list[str]:
        g = self._rule_group()
        return [f"{g.name}_mu" if g.name in self.spec.pooled else g.name]

    @property
    def log_likelihood(self) -> np.ndarray:
        """Pointwise log-likelihood (chain, draw, subject, trial); 0 on masked-out trials."""
        return np.asarray(self.idata.log_likelihood["observations"].values)

    # ---- tables and diagnostics ----------------------------------------------------------

    def summary(self, interval: float = 0.9, var_names: list[str] | None = None) -> pd.DataFrame:
        """Mean, sd, equal-tailed ``interval``, ESS (bulk, tail) and R-hat, one row per named scalar."""
        var_names = var_names if var_names is not None else self.spec.reported_variables()
        key = (interval, tuple(var_names))
        if key not in self._summary_cache:
            self._summary_cache[key] = _arviz.summary_table(self.idata, var_names, interval)
        return self._summary_cache[key].copy()

    def _setting(self, name: str, default: float) -> float:
        """A sampler setting of this run (``method`` is the settings object, or its repr for a loaded posterior)."""
        value = getattr(self.method, name, None)
        if value is None:
            m = re.search(rf"\b{name}=(?:np\.float64\()?([0-9.eE+-]+)", str(self.method))  # also an older file's repr
            value = float(m.group(1)) if m else default
        return float(value)

    def diagnostics(self) -> list[str]:
        """Messages for failed checks (R-hat > 1.01, divergences, low ESS, tree depth, SVI convergence).

        The remedies start from this run's settings: a higher ``target_accept`` than it used (0.95, then 0.99),
        and at least twice its warmup and draws."""
        msgs = []
        accept = self._setting("target_accept", 0.8)
        raise_accept = (f"Raise NUTS(target_accept={0.95 if accept < 0.95 else 0.99})" + ("" if accept == 0.8 else f" (this run: {accept:g})")
                        if accept < 0.99 else f"With the acceptance target already at {accept:g}")
        stats = _arviz.group(self.idata, "sample_stats")
        if stats is not None and "diverging" in stats:
            n_div = int(stats["diverging"].values.sum())
            if n_div:
                total = stats["diverging"].size
                head = (
                    f"{n_div} of {total} draws ended in a divergent transition: the sampler met regions of high "
                    "curvature and the posterior may be biased there. "
                )
                if self.spec.pooled:  # a hierarchical fit, non-centred already: the funnel at small spreads τ
                    pooled = sorted(self.spec.pooled)
                    msgs.append(
                        head + f"This hierarchical fit is already non-centred (θ_s = μ + τ·z_s for {pooled}); divergences "
                        "here come from the funnel where the population spread τ is small, which the sampler "
                        f"under-explores, so the intervals of the population means {[n + '_mu' for n in pooled]} and "
                        f"spreads {[n + '_tau' for n in pooled]} may be too narrow. {raise_accept}, "
                        "add subjects, or give the spread a tighter prior (Priors(population_scale=HalfNormal(...)) "
                        "with a smaller scale); drop terms that can make the rule unstable (e.g. w^2)."
                    )
                else:
                    msgs.append(
                        head + f"{raise_accept}, tighten the priors, use a hierarchical (non-centred) "
                        "fit for per-subject parameters, or drop terms that can make the rule unstable (e.g. w^2)."
                    )
        if stats is not None and "reached_max_treedepth" in stats:
            frac = float(stats["reached_max_treedepth"].values.mean())
            if frac > 0.05:
                msgs.append(
                    f"{100 * frac:.0f} % of draws hit the maximum tree depth: the posterior is long and thin (often "
                    "near-degenerate terms). Run identifiability() and remove or constrain terms the data cannot "
                    f"separate, or use NUTS(target_accept={accept:g}, dense_mass=True, max_tree_depth=12)."
                )
        table = self.summary()
        mcmc = stats is not None and "diverging" in stats  # NUTS; SVI's draws are independent by construction
        if mcmc and self.n_chains == 1:
            msgs.append(
                "one chain: R-hat cannot be computed, so nothing checks that the sampler converged. Run two or more "
                "chains (NUTS(chains=2), the default; docs/bayes.md says how they run in parallel on CPU cores)."
            )
        if self.n_chains > 1:
            rhat = table["r_hat"].to_numpy(dtype=float)
            bad = table.index[np.nan_to_num(rhat, nan=np.inf) > RHAT_MAX]
            longer = [max(1000, 2 * int(self._setting(k, 500))) for k in ("warmup", "samples")]
            if len(bad):
                msgs.append(
                    f"R-hat > {RHAT_MAX} (max {np.nanmax(rhat):.3f}) for {len(bad)} parameters, e.g. "
                    f"{list(bad[:5])}: the chains disagree. Run longer (NUTS(warmup={longer[0]}, samples={longer[1]})), start "
                    "from a MAP fit (init=fit(...)), or check identifiability() — terms the data cannot separate "
                    "need to be removed or given tighter priors."
                )
        if self.n_chains > 1 or mcmc:
            ess = table["ess_bulk"].to_numpy(dtype=float)
            low = table.index[ess < ESS_MIN]
            if len(low):
                msgs.append(
                    f"bulk ESS below {ESS_MIN} (min {np.nanmin(ess):.0f}) for {len(low)} parameters, e.g. {list(low[:5])}: "
                    "intervals are unreliable. Draw more samples or reparameterise (hierarchical fits are non-centred already)."
                )
        check = self.svi_check()
        if check is not None:
            msgs += _svi_check_messages(check)
            if self.spec.pooled and check.get("guide") in MEAN_FIELD_GUIDES:  # records saved before the key: not said
                msgs.append(
                    f"SVI's {check['guide']} guide is mean-field, and on a hierarchical model it under-states the spreads "
                    "where the population means, spreads and subject offsets are correlated, which its optimum check "
                    "cannot see: on a 12-subject benchmark (benchmarks/bench_svi.py) its sds were a median 0.36× NUTS's "
                    "(0.20–0.76×), a full-covariance guide's 0.67×. Where the intervals matter use method=NUTS() or "
                    "SVI(guide=numpyro.infer.autoguide.AutoMultivariateNormal)."
                )
        if self.loss_history is not None:
            n = len(self.loss_history)
            if n >= 20:
                tail = self.loss_history[-n // 10 :].mean()
                before = self.loss_history[-n // 5 : -n // 10].mean()
                first = self.loss_history[: max(n // 10, 1)].mean()
                if tail > first + 0.01 * max(abs(first), 1.0):  # beyond noise: the ELBO got worse overall
                    msgs.append(
                        f"SVI's loss rose from {first:.4g} (first 10 % of steps) to {tail:.4g} (last 10 %): the fit moved "
                        "away from the data and these draws are not a posterior. Lower SVI(learning_rate=...) or start "
                        "from a MAP fit (init=fit(...))."
                    )
                elif check is None and abs(before - tail) > 0.01 * max(abs(tail), 1.0):
                    # guides outside the Gaussian families: only the loss's tail (which a decayed step size flattens)
                    msgs.append(
                        f"SVI's loss still changed by {abs(before - tail):.3g} over the last 10 % of steps: it may not "
                        "have converged. Run more SVI(steps=...) or raise the learning rate."
                    )
            if check is None:
                msgs.append(
                    "SVI's guide has no optimum check (AutoNormal, AutoDiagonalNormal and AutoMultivariateNormal have "
                    "one, not their subclasses), so nothing here says whether its spreads reached their optimum: on "
                    "one coefficient with a known posterior, AutoLowRankMultivariateNormal ended 1.3× too wide after "
                    "the default 3000 steps (3.8× without the clip) with a flat loss. Use one of those guides, or "
                    "compare with NUTS on a small version of the model."
                )
        return msgs

    def svi_check(self) -> dict | None:
        """The check of an SVI fit with a Gaussian guide (AutoNormal, AutoDiagonalNormal, AutoMultivariateNormal)
        against its own optimum (saved with the posterior), or None.

        ``{"particles", "nonfinite_particles", "scalars", "n_spread", "n_wide", "spread", "n_location",
        "location", "n_pairs", "pairs", "guide", "initial_spread"}``: ``spread`` lists up to 10 ``[scalar, fitted
        spread / estimated optimum, z]`` beyond ``SPREAD_TOLERANCE`` (worst first; 0.01 where the Gaussian
        reading breaks down), ``location`` up to 10 ``[scalar, offset in units of the optimal spread, z]`` beyond
        ``LOCATION_TOLERANCE``, ``pairs`` (full-covariance guides) up to 10 ``[scalar, scalar, coupling in the
        guide's whitened coordinates, z]`` beyond ``COUPLING_TOLERANCE``; ``n_spread``/``n_location``/``n_pairs``
        count them all, ``n_wide`` the spreads too wide. Particles whose gradient was not finite are left out of the estimates and counted. Empty
        lists and no such particles: the guide is at its optimum as far as ``particles`` draws from it can
        tell. See docs/bayes.md, "SVI".
        """
        text = self.idata.posterior.attrs.get("svi_check")
        return None if text is None else json.loads(text)

    def ess_per_second(self) -> pd.Series:
        """Bulk ESS per second of sampler wall time, per scalar (NaN for a loaded posterior: files hold no wall time)."""
        return self.summary()["ess_bulk"] / self.seconds

    # ---- models ------------------------------------------------------------------------------

    def _values(self, reduce) -> dict:
        return {g.name: jnp.asarray(reduce(self.draws(g.name))) for g in self.spec.groups}

    def model_at(self, chain: int, draw: int) -> PlasticityModel:
        """The model at one draw (non-hierarchical posteriors)."""
        self._no_pool("model_at")
        return self.spec.place(self._values(lambda a: a[chain, draw]))

    def mean_model(self) -> PlasticityModel:
        """The model at the posterior mean of every sampled parameter (non-hierarchical posteriors)."""
        self._no_pool("mean_model")
        return self.spec.place(self._values(lambda a: a.mean((0, 1))))

    def subject_model(self, subject: int) -> PlasticityModel:
        """Subject ``subject``'s model at its posterior mean (its trajectories only)."""
        return self.spec.subject_model(self._values(lambda a: a.mean((0, 1))), subject)

    def population_model(self) -> PlasticityModel:
        """The model with pooled blocks at their population mean μ (posterior mean): "subjects in general"."""
        values = self._values(lambda a: a.mean((0, 1)))
        model = self.spec.place(values)
        for g in self.spec.groups:
            if g.name in self.spec.pooled:
                mu = self.draws(f"{g.name}_mu").mean((0, 1))
                model = g.set(model, jnp.asarray(mu, dtype=g.get(model).dtype))
        return model

    def _no_pool(self, what):
        if self.spec.pooled:
            raise ModelError(f"{what} needs a non-hierarchical posterior; use subject_model(s) or population_model()")

    # ---- held-out and LOO ----------------------------------------------------------------

    def loo(self, *, warn: bool = True):
        """PSIS-LOO (ArviZ) over the observed trials.

        Optimistic for learning data: leaving trial t out removes its likelihood term but not its
        influence on the weights of later trials (its choice and reward still drive learning), so
        this is not a held-out score. Prefer ``compare(...)`` with a time-respecting split.
        """
        valid = np.asarray(self.idata.constant_data["trial_valid"].values, bool)
        result = _arviz.psis_loo(self.idata, "observations", valid)
        if warn:
            _warn(
                "PSIS-LOO on learning data is optimistic: a left-out trial still shapes later weights through its "
                "inputs. Use plasticinfer.compare with a time-respecting split for held-out scores.",
                PosteriorWarning,
            )
            k = np.asarray(result.pareto_k)
            if (k > 0.7).any():
                _warn(f"{int((k > 0.7).sum())} trials have Pareto k > 0.7: PSIS-LOO is unreliable for them.", PosteriorWarning)
        return result

    # ---- identifiability -----------------------------------------------------------------------

    def identifiability(self, data: TrialData | None = None, **kwargs):
        """Posterior correlations, data-uninformed directions and aliased terms (see :func:`identifiability`)."""
        from ._identifiability import identifiability

        return identifiability(self, data, **kwargs)

    def plot_pairs(self, names: list[str] | None = None, *, truth: dict | None = None, max_draws: int = 1000):
        """Pairwise posterior scatter plots with correlations (a matplotlib Figure)."""
        from ._plots import plot_pairs

        return plot_pairs(self.flat(names), truth=truth, max_draws=max_draws)

    def __repr__(self) -> str:
        from .._results_io import duration

        return (
            f"Posterior({self.method!r}, {self.n_chains} chains × {self.n_draws} draws, {duration(self.seconds)}, "
            f"variables {self.spec.reported_variables()})"
        )


def _labels(da, name: str) -> list[str]:
    """``name[coord, …]`` per scalar of a (chain, draw, …) DataArray, in C order."""
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if not dims:
        return [name]
    values = [list(map(str, da[d].values)) for d in dims]
    out = []
    for idx in np.ndindex(*[len(v) for v in values]):
        out.append(f"{name}[{', '.join(values[k][i] for k, i in enumerate(idx))}]")
    return out


#: Prefix of the sampled model's arrays in the ``constant_data`` group (``model.rule.coeffs``, …).
_MODEL = "model."


def _stored_model(path, idata) -> tuple[xr.Dataset, list[str]] | None:
    """The sampled model as :func:`check_like` reads one (its arrays, configuration attrs and ``term``
    coordinate) and its parameter names; ``None`` for a file written before posteriors recorded it."""
    from .._errors import FileFormatError

    attrs = dict(idata.posterior.attrs)
    if "model_structure" not in attrs:  # written before posteriors recorded their model
        return None
    for name in ("model_parameters", "model_terms"):  # written with it: these belong with it
        if name not in attrs:
            raise FileFormatError(
                f"{path}: a damaged or incomplete posterior: the attribute {name!r} of the posterior group is missing. "
                "Re-create it (sample again and save) or restore it from a copy."
            )
    shapes = json.loads(attrs["model_parameters"])  # name: shape (ArviZ stores a scalar as shape (1,))
    names = list(shapes)
    constant = _arviz.group(idata, "constant_data")
    missing = [n for n in names if constant is None or _MODEL + n not in constant or constant[_MODEL + n].size != np.prod(shapes[n])]
    if missing:
        raise FileFormatError(
            f"{path}: the file describes model parameters {missing} but holds no values of their shapes for them "
            f"(constant_data/{_MODEL}…): it is damaged or was edited; sample again and save"
        )
    ds = xr.Dataset(
        {_MODEL + n: ([f"{_MODEL}{n}.dim{k}" for k in range(len(shapes[n]))], constant[_MODEL + n].values.reshape(shapes[n]))
         for n in names},
        attrs=attrs,
    )  # fmt: skip
    return ds.assign_coords(term=("term", json.loads(attrs.get("model_terms", "[]")))), names


def _check_model(path, idata, stored, like: PlasticityModel) -> None:
    """Refuse a ``like`` not built as the model that was sampled (``stored``, from :func:`_stored_model`), with a
    :class:`DataError` naming each difference."""
    from .._errors import DataError

    problems = []
    try:
        n_stored = json.loads(idata.posterior.attrs.get("model", "{}")).get("n_trajectories")
    except ValueError:
        n_stored = None
    if n_stored is not None and int(n_stored) != like.n_trajectories:
        problems.append(f"trajectories (subjects): file has {int(n_stored)}, like= has {like.n_trajectories}")
    if stored is not None:
        ds, names = stored
        # the shared check of FitResult.load: terms, parameter shapes, rule/network/observation settings
        problems += like_differences(ds, like, names, lead=0, prefix=_MODEL)
    if problems:
        raise DataError(_mismatch(path, problems))


def _check_held_values(path, stored, like: PlasticityModel, spec: ModelSpec) -> None:
    """Refuse a ``like`` whose values of what the posterior did not sample (a fixed inverse temperature or noise
    scale, fixed Taylor coefficients, held initial weights) differ from the sampled model's: the posterior's
    models (``subject_model``, ``model_at``, predictive checks) are built from them."""
    from .._errors import DataError

    if stored is None:
        return
    ds, _ = stored
    model = fill_like(like, ds, _MODEL)
    for g in spec.groups:  # sampled blocks: the draws say what they are, the warm start does not matter
        model = g.set(model, g.get(like))
    problems = []
    given = named_leaves(like)
    for name, a in named_leaves(model).items():
        a, b = np.asarray(a), np.asarray(given[name])
        if a.shape == b.shape and not np.allclose(a, b, rtol=1e-6, atol=1e-12, equal_nan=True):
            problems.append(f"{name} (held, not sampled): file has {_brief(a)}, like= has {_brief(b)}")
    if problems:
        raise DataError(_mismatch(path, problems))


def _brief(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a, dtype=float), precision=4, threshold=8, separator=", ").replace("\n", "")


def _mismatch(path, problems: list[str]) -> str:
    return (
        f"{path}: the posterior was sampled with a model that differs from like=:\n  - " + "\n  - ".join(problems)
        + "\nPass like= the model given to sample (built the same way, with the same fixed values; the starting "
        "values of sampled parameters may differ), and the priors and hierarchy it was sampled with."
    )


def _describe_model(model: PlasticityModel) -> str:
    rules = model.taylor_rules()
    return json.dumps(
        {
            "rule": {k: r.equation() for k, r in rules.items()} or type(model.rule).__name__,
            "network": type(model.network).__name__,
            "observation": type(model.observation).__name__,
            "n_trajectories": model.n_trajectories,
        }
    )


#: Guides whose spreads ignore correlations (``diagnostics`` says so for hierarchical models).
MEAN_FIELD_GUIDES = ("AutoNormal", "AutoDiagonalNormal")


def _svi_check_messages(check: dict) -> list[str]:
    """Warnings for an SVI fit whose guide is not at its optimum (``Posterior.svi_check``)."""
    msgs, n = [], check["particles"]
    advice = (
        "Run more SVI(steps=...) or raise SVI(learning_rate=...); starting from a MAP fit (init=fit(...)) also helps"
    )

    def factor(r: float) -> str:  # 0.01 is the floor where the Gaussian reading breaks down (its square ≤ 0)
        return "≤0.01×" if r <= 0.01 * (1 + 1e-9) else f"{r:.2f}×"

    bad = check["nonfinite_particles"]
    if bad:
        msgs.append(
            f"SVI stopped before its guide converged: {bad} of {n} draws from the fitted guide gave a non-finite "
            "gradient (the guide reaches values where the model overflows, typically spreads far too wide)"
            + ("; the check of its spreads and means had too few finite draws to run" if not check["scalars"] else "")
            + f". {advice}."
        )
    if check["n_spread"]:
        worst = ", ".join(f"{name} {factor(r)}" for name, r, _ in check["spread"][:5])
        wide = check["n_wide"]
        msgs.append(
            f"SVI stopped before its guide converged: the posterior's gradients at {n} draws from the fitted guide put "
            f"{check['n_spread']} of {check['scalars']} fitted spreads more than {SPREAD_TOLERANCE}× from their "
            f"optimum (fitted / optimum: {worst}{', …' if check['n_spread'] > 5 else ''}), so "
            + ("intervals are too wide" if wide == check["n_spread"] else "intervals are too narrow" if not wide
               else "intervals are too wide or too narrow")
            + f" there. {advice}."
        )
    if check["n_location"]:
        worst = ", ".join(f"{name} {o:+.2f}" for name, o, _ in check["location"][:5])
        msgs.append(
            f"SVI stopped before its guide converged: the posterior's gradients at {n} draws from the fitted guide put "
            f"{check['n_location']} means more than {LOCATION_TOLERANCE} of their optimal spread from their optimum "
            f"(fitted − optimum, in those spreads: {worst}{', …' if check['n_location'] > 5 else ''}). {advice}."
        )
    if check.get("n_pairs"):  # full-covariance guides (records saved before the key: none)
        worst = ", ".join(f"{a} – {b} {c:+.2f}" for a, b, c, _ in check["pairs"][:5])
        msgs.append(
            f"SVI stopped before its guide converged: the posterior's gradients at {n} draws from the fitted guide put "
            f"{check['n_pairs']} pair{'s' if check['n_pairs'] != 1 else ''} of the guide's whitened coordinates coupled by more than "
            f"{COUPLING_TOLERANCE:.2f}, 0 at its optimum ({worst}{', …' if check['n_pairs'] > 5 else ''}; each named by "
            "its scalar, which there means that scalar given the ones before it in the guide's order): its "
            f"correlations are not yet the posterior's. {advice}."
        )
    return msgs

__all__ = ["Posterior"]

