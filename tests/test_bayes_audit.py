"""Defects found by an audit of pi.bayes, each checked against an oracle the old code failed:

- the default SVI's spread against an exact grid posterior, a wide one and a narrow one (the starting spreads from
  the Hessian; the check of the fitted guide against its own optimum);
- the SBC uniformity tests' false-alarm rate on exactly uniform discrete ranks;
- the divergence advice of a hierarchical (already non-centred) fit;
- ``Posterior.load(like=...)`` against the model that was sampled;
- byte-identical posterior files from identical runs.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
import scipy.stats as st
from numpyro.infer import Predictive

import plasticinfer as pi
from plasticinfer import bayes
from plasticinfer._errors import DataError
from plasticinfer.bayes import CalibrationResult
from plasticinfer.bayes._numpyro_model import ModelSpec

# ---------------------------------------------------------------------------------------------
# 1. SVI's default spread vs the exact posterior of one coefficient
# ---------------------------------------------------------------------------------------------

SIG, ETA, T = 0.3, 0.05, 40


def _one_coefficient_problem(SIG=SIG, T=T, grid=np.linspace(-0.4, 2.0, 1601)):
    """y = w x, Δw = η(θ x y − y² w) with θ the one free coefficient, Gaussian noise: the auditor's setup."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, T, 2)) * np.array([1.0, 0.5])
    w0 = np.array([[[0.4, -0.3]]])

    def simulate(theta):  # plain NumPy, independent of the package
        w, ys = w0[0].copy(), []
        for t in range(T):
            y = w @ x[0, t]
            ys.append(y)
            w = w + ETA * (theta * np.outer(y, x[0, t]) - (y**2)[:, None] * w)
        return np.array(ys)

    obs = simulate(0.8) + SIG * rng.normal(size=(T, 1))
    data = pi.TrialData(inputs={"x": jnp.asarray(x)}, observations=jnp.asarray(obs[None]), mask=jnp.ones((1, T, 1), bool))
    rule = pi.TaylorRule.from_terms({"x*y": 0.5, "y^2*w": -1.0}, learning_rate=ETA).with_fixed(["y^2*w"])
    model = pi.PlasticityModel(rule, pi.FeedForward(2, 1), pi.GaussianActivity(SIG, learn_sigma=False), {"w": jnp.asarray(w0)})
    # the exact posterior under a Laplace(0.2, 0.5) prior, on a grid
    logp = np.array([st.norm.logpdf(obs, simulate(g), SIG).sum() for g in grid]) + st.laplace(0.2, 0.5).logpdf(grid)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    mean = (grid * p).sum()
    sd = np.sqrt(((grid - mean) ** 2 * p).sum())
    priors = bayes.Priors(coefficients=bayes.Laplace(0.5, loc=0.2), observation=None, network=None, initial_weights=None)
    return model, data, priors, mean, sd


def test_default_svi_spread_matches_exact_grid_posterior():
    """One free coefficient (exact sd 0.112; the best Gaussian's 0.111): the default SVI with one ELBO particle
    gave sd 0.127–0.136 over three keys (14–22 % too wide); it must be within 7 % (4000 draws: ±1 % noise)."""
    model, data, priors, mean, sd = _one_coefficient_problem()
    assert sd == pytest.approx(0.1116, abs=5e-4)  # the oracle is the auditor's
    for k in (12,):  # the auditor's key 12 (sd 0.136 before; its keys 10 and 11 gave 0.131 and 0.127)
        post = bayes.sample(model, data, key=jax.random.key(k), priors=priors, method=bayes.SVI(draws=4000), warn=False)
        s = post.draws("theta").ravel()
        assert s.std() == pytest.approx(sd, rel=0.07), (k, s.std(), sd)
        assert s.mean() == pytest.approx(mean, abs=0.1 * sd)


def _precise_problem():
    """The same rule and coefficient with 200 trials at noise sd 0.02: a posterior sd of 0.0026, 38× narrower than
    AutoNormal's starting scale of 0.1 (the exact posterior on a grid 1/40 sd fine)."""
    return _one_coefficient_problem(0.02, 200, np.linspace(0.75, 0.85, 1601))


@pytest.mark.slow  # about 15 s (two SVI runs of 3000 steps)
def test_svi_starts_at_the_hessian_spread_and_reaches_a_narrow_exact_posterior():
    """Started at AutoNormal's scale of 0.1, the default SVI ended 1.30× too wide on this posterior (sd 0.0033 vs
    0.0026; 5× after 800 steps) with no warning: each log-scale moves about one step size per step. Started at the
    conditional sd of the Hessian at the start it must end within 5 % of the exact sd without the clip, and with the
    default clip within 1.3×, its check saying so beyond 1.25× and not below 1.15×: the clip's bias (SVI.clip_norm)
    was 1.06–1.13× over keys 12–14 on the machine that first set this bound at 15 %, and 1.09–1.17× on another with
    the same package versions (key 12: 1.17×, and 1.13× with the same clip written with other rounding), so 15 % was
    inside the rounding noise of a 3000-step run. The start itself is told apart by the clip-free bound (from 0.1:
    4.3× too wide) and the recorded start."""
    model, data, priors, mean, sd = _precise_problem()
    assert sd == pytest.approx(0.00257, rel=0.01)
    for method, clipped in ((bayes.SVI(draws=4000), True), (bayes.SVI(draws=4000, clip_norm=np.inf), False)):
        post = bayes.sample(model, data, key=jax.random.key(12), priors=priors, method=method, warn=False)
        s = post.draws("theta").ravel()
        ratio = s.std() / sd
        check = post.svi_check()
        assert check["initial_spread"] == "Hessian diagonal at the start" and check["scalars"] == 1, check
        assert s.mean() == pytest.approx(mean, abs=0.2 * sd)
        assert check["n_location"] == 0, check
        if clipped:  # the clip's bias, read honestly: near 1.2x the check may say either; beyond it, it must flag
            assert 0.95 < ratio < 1.3, ratio
            if ratio > 1.25:
                assert check["n_spread"] == 1, (ratio, check)
            elif ratio < 1.15:
                assert check["n_spread"] == 0, (ratio, check)
        else:
            assert ratio == pytest.approx(1.0, abs=0.05), ratio
            assert check["n_spread"] == 0, check
        assert not [m for m in post.diagnostics() if "SVI" in m]


def test_svi_check_measures_how_far_an_unconverged_guide_is_from_its_optimum(monkeypatch, tmp_path):
    """Without the Hessian start (as above SVI_HESSIAN_MAX_DIMENSION scalars), 800 steps leave the spread about 5×
    too wide and the loss flat (a decayed step size): the old check of the loss's tail said nothing. The ELBO's
    gradient at the fitted guide must measure the factor (against the exact sd), warn, and be saved with the
    posterior."""
    import plasticinfer.bayes._nuts as nuts

    monkeypatch.setattr(nuts, "SVI_HESSIAN_MAX_DIMENSION", 0)
    model, data, priors, mean, sd = _precise_problem()
    with pytest.warns(bayes.PosteriorWarning, match="SVI stopped before its guide converged") as record:
        post = bayes.sample(model, data, key=jax.random.key(12), priors=priors, method=bayes.SVI(steps=800, draws=4000))
    check = post.svi_check()
    assert check["initial_spread"] == "AutoNormal's init_scale (0.1)"
    actual = post.draws("theta").std() / sd
    assert actual > 3  # the case the check is for
    (name, factor, z), = check["spread"]
    assert name == "theta[x*y]" and factor == pytest.approx(actual, rel=0.1) and z > 4, (check, actual)
    message = next(str(w.message) for w in record if "SVI stopped" in str(w.message))
    assert f"theta[x*y] {factor:.2f}×" in message and "too wide" in message
    path = tmp_path / "p.nc"
    post.save(path)
    loaded = bayes.Posterior.load(path, like=model, priors=priors)
    assert loaded.svi_check() == check
    assert any("SVI stopped before its guide converged" in m for m in loaded.diagnostics())


def test_svi_check_counts_draws_whose_gradient_overflows():
    """A guide 2000× too wide draws coefficients that overflow the simulation: 10–60 % of the check's gradients were
    NaN, every mean was NaN and nothing was flagged ("converged"). The non-finite draws must be counted and warned
    about, and the finite ones still read."""
    from numpyro.infer import SVI as NumPyroSVI
    from numpyro.infer import Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal
    from numpyro.infer.initialization import init_to_value

    from plasticinfer.bayes import _sample
    from plasticinfer.bayes._posterior import _svi_check_messages

    model, data, priors, mean, sd = _precise_problem()
    spec, _, data, latent = _sample.prepare(model, data, priors=priors, method=bayes.SVI())
    guide = AutoNormal(spec.numpyro_model, init_loc_fn=init_to_value(values=latent))
    svi = NumPyroSVI(spec.numpyro_model, guide, numpyro.optim.Adam(0.01), Trace_ELBO(num_particles=4))
    with jax.numpy_dtype_promotion("standard"):
        params = svi.get_params(svi.init(jax.random.key(0), data))
        wide = {**params, "theta_auto_scale": jnp.full_like(params["theta_auto_scale"], 5.0)}
        check = _sample._optimum_check(spec, guide, wide, data, latent, jax.random.key(1), 4)
    assert check["nonfinite_particles"] > 0, check
    messages = _svi_check_messages(check)
    assert any(f"{check['nonfinite_particles']} of 400 draws from the fitted guide gave a non-finite gradient" in m
               for m in messages), messages  # fmt: skip
    assert check["particles"] == 400 and check["nonfinite_particles"] < 400  # the finite draws are kept, counted apart


def _gaussian_posterior():
    """A correlated Gaussian posterior (correlations 0.9, 0.5, 0.3; sds 1, 0.1, 3): the potential ½(z − m)ᵀH(z − m),
    its mean, precision and covariance."""
    sds, corr = np.array([1.0, 0.1, 3.0]), np.array([[1.0, 0.9, 0.5], [0.9, 1.0, 0.3], [0.5, 0.3, 1.0]])
    cov, m = corr * np.outer(sds, sds), np.array([0.3, -1.0, 2.0])
    h = np.linalg.inv(cov)
    return (lambda z: 0.5 * (z - m) @ h @ (z - m)), m, h, cov


@pytest.mark.parametrize("k", [0.5, 1.0, 3.0])
def test_gaussian_guide_check_reads_a_full_covariance_guide_against_the_exact_posterior(k):
    """A full-covariance guide k times too wide (Σ = k² H⁻¹, mean exact) must read k for every scalar and no offset;
    at k = 1 with the mean moved by δ it must read δ_i / sd_i (the analytic answers)."""
    from plasticinfer.bayes._sample import gaussian_guide_check

    potential, m, h, cov = _gaussian_posterior()
    chol = np.linalg.cholesky(cov)
    found = gaussian_guide_check(potential, jnp.asarray(m), jnp.asarray(k * chol), jax.random.key(0), 4000)
    assert found["finite"] == 4000
    np.testing.assert_allclose(found["ratio"], k, rtol=0.05)
    np.testing.assert_allclose(found["offset"], 0.0, atol=0.1 * k)  # its noise grows with k (SE 0.05 at k = 3)
    assert (found["offset_z"] < 4).all()  # so no mean is flagged
    if k == 1.0:
        delta = np.array([0.5, -1.0, 0.2]) * np.sqrt(np.diag(cov))
        moved = gaussian_guide_check(potential, jnp.asarray(m + delta), jnp.asarray(chol), jax.random.key(1), 4000)
        np.testing.assert_allclose(moved["offset"], delta / np.sqrt(np.diag(cov)), atol=0.1)
        np.testing.assert_allclose(moved["ratio"], 1.0, rtol=0.05)
        assert (moved["offset_z"] > 4).all()


def test_a_full_guide_at_the_mean_field_solution_is_not_read_as_converged():
    """A full-covariance guide stuck at the mean-field solution (Σ = diag(1/H_ii)) meets every per-scalar condition
    (ratio 1) while its marginals are too narrow (0.36× here); its whitened curvature W = LᵀHL then carries the
    posterior's partial correlations, negated (H_ij/sqrt(H_ii H_jj)), off the diagonal, which must be read (and flagged by the
    record's rule: beyond COUPLING_TOLERANCE at ≥ 4 SE), and at the exact optimum read 0 and flag nothing."""
    from plasticinfer.bayes._posterior import CHECK_MIN_Z, COUPLING_TOLERANCE, _svi_check_messages
    from plasticinfer.bayes._sample import gaussian_guide_check

    potential, m, h, cov = _gaussian_posterior()
    d = np.diag(1 / np.sqrt(np.diag(h)))
    stuck = gaussian_guide_check(potential, jnp.asarray(m), jnp.asarray(d), jax.random.key(3), 4000)
    np.testing.assert_allclose(stuck["ratio"], 1.0, rtol=0.05)  # what the per-scalar reading alone sees
    negated_partial = d @ h @ d
    np.fill_diagonal(negated_partial, 0.0)
    np.testing.assert_allclose(stuck["coupling"], negated_partial, atol=0.05)
    flagged = (np.abs(stuck["coupling"]) > COUPLING_TOLERANCE) & (stuck["coupling_z"] > CHECK_MIN_Z)
    assert flagged[np.triu_indices(3, 1)].all() and abs(negated_partial[0, 1]) > 0.9  # −0.91, −0.55, 0.40 all beyond 0.31
    exact = gaussian_guide_check(potential, jnp.asarray(m), jnp.asarray(np.linalg.cholesky(cov)), jax.random.key(4), 4000)
    assert np.abs(exact["coupling"]).max() < 0.1 and not ((np.abs(exact["coupling"]) > COUPLING_TOLERANCE) & (exact["coupling_z"] > CHECK_MIN_Z)).any()
    record = {"particles": 400, "nonfinite_particles": 0, "scalars": 3, "n_spread": 0, "n_wide": 0, "spread": [],
              "n_location": 0, "location": [], "n_pairs": 1, "pairs": [["theta[x*r]", "theta[w]", -0.93, 30.0]]}  # fmt: skip
    (message,) = _svi_check_messages(record)
    assert "1 pair of the guide's whitened coordinates coupled by more than 0.31" in message and "theta[x*r] – theta[w] -0.93" in message


def test_gaussian_guide_check_reads_a_mean_field_guide_against_its_own_optimum():
    """A diagonal guide is at its optimum at σ_i = 1/sqrt(H_ii), narrower than the correlated posterior's marginal
    sds: it must read 1 there (not the marginal's ratio, which is what the family cannot reach) and 2.5 at 2.5 times
    that spread."""
    from plasticinfer.bayes._sample import gaussian_guide_check

    potential, m, h, cov = _gaussian_posterior()
    best = 1 / np.sqrt(np.diag(h))
    assert (best < 0.8 * np.sqrt(np.diag(cov))).any()  # the marginals are wider: the problem has correlations
    for k in (1.0, 2.5):
        found = gaussian_guide_check(potential, jnp.asarray(m), jnp.asarray(k * best), jax.random.key(2), 4000)
        np.testing.assert_allclose(found["ratio"], k, rtol=0.05)
        np.testing.assert_allclose(found["offset"], 0.0, atol=0.1)


@pytest.mark.slow
def test_svi_check_and_start_cover_a_full_covariance_guide(monkeypatch):
    """AutoMultivariateNormal had neither the Hessian start nor the check: from its 0.1 (38× the exact sd here) it was
    2.2× too wide after 6000 steps without the clip, silently. From the 0.1 start, stopped after 800 steps, the check
    must flag it by its factor against the exact sd; started at the inverse Hessian it must end within 5 % of the
    exact sd in the default 3000 steps (without the clip) and read converged."""
    import plasticinfer.bayes._nuts as nuts
    from numpyro.infer.autoguide import AutoMultivariateNormal

    model, data, priors, mean, sd = _precise_problem()
    post = bayes.sample(model, data, key=jax.random.key(12), priors=priors, warn=False,
                        method=bayes.SVI(guide=AutoMultivariateNormal, draws=4000, clip_norm=np.inf))  # fmt: skip
    assert post.draws("theta").std() == pytest.approx(sd, rel=0.05)
    assert post.svi_check()["initial_spread"] == "inverse Hessian at the start"
    assert post.svi_check()["n_spread"] == 0 and post.svi_check()["n_location"] == 0, post.svi_check()
    monkeypatch.setattr(nuts, "SVI_HESSIAN_MAX_DIMENSION", 0)
    with pytest.warns(bayes.PosteriorWarning, match="SVI stopped before its guide converged"):
        short = bayes.sample(model, data, key=jax.random.key(12), priors=priors,
                             method=bayes.SVI(guide=AutoMultivariateNormal, steps=800, draws=4000))  # fmt: skip
    check = short.svi_check()
    actual = short.draws("theta").std() / sd
    assert actual > 2 and check["initial_spread"] == "AutoMultivariateNormal's init_scale (0.1)"
    (name, factor, z), = check["spread"]
    assert name == "theta[x*y]" and factor == pytest.approx(actual, rel=0.1) and z > 4, (check, actual)


@pytest.mark.slow
def test_svi_with_an_unchecked_guide_says_so():
    """AutoLowRankMultivariateNormal (outside the families the check reads) ended 3.8× too wide without the clip, its
    loss flat and no warning: the diagnostics must say that nothing checked its spreads."""
    from numpyro.infer.autoguide import AutoLowRankMultivariateNormal

    model, data, priors, mean, sd = _precise_problem()
    with pytest.warns(bayes.PosteriorWarning, match="SVI's guide has no optimum check"):
        post = bayes.sample(model, data, key=jax.random.key(12), priors=priors,
                            method=bayes.SVI(guide=AutoLowRankMultivariateNormal, draws=2000, clip_norm=np.inf))  # fmt: skip
    assert post.svi_check() is None
    assert post.draws("theta").std() / sd > 2  # the case the warning is for


@pytest.mark.slow  # about 15 s each (a MAP fit and a Hessian)
@pytest.mark.parametrize("guide_name", ["AutoMultivariateNormal", "AutoDiagonalNormal"])
def test_a_flat_guides_start_lies_on_its_own_sites(guide_name):
    """The start of the flat-latent guides was laid out in the sites' sorted order (bias, log_inverse_temperature,
    theta) while the guide's latent follows the model (theta first): the −0.99 correlation of the x·r and w terms
    and the precise sd of log β landed on other scalars. Against the Hessian computed here by site name: each
    scalar's start sd must be min(sd, 0.1) — the full guide's from H⁻¹, scaled down with its correlations kept —
    the diagonal guide's min(1/sqrt(H_ii), 0.1)."""
    import numpyro
    import numpyro.infer.autoguide as autoguide
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.initialization import init_to_value

    from plasticinfer.bayes import _sample

    # key 5: a fly that keeps choosing both odours (56 % one of them; with most keys the rule locks onto one)
    data = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.5, "w": -0.05}), key=jax.random.key(5), n_subjects=1,
                               inverse_temperature=2.0, trials_per_block=100).data  # fmt: skip
    assert 0.2 < float(np.mean(data.observations)) < 0.8
    model = pi.PlasticityModel.create(pi.TaylorRule.from_terms({"x*r": 0.0, "w": 0.0}), pi.ChoiceCircuit(2),
                                      pi.BernoulliChoice(1.0, learn_temperature=True), n_trajectories=1,
                                      initial_weights={"w": jnp.zeros((1, 2))})  # fmt: skip
    start = pi.fit(model, data, steps=300, progress=False, fit_initial_weights=False).model
    spec, _, data, latent = _sample.prepare(start, data, method=bayes.SVI())
    with jax.numpy_dtype_promotion("standard"):
        potential_gen, z0 = _sample.unconstrained_potential(spec, data, latent, jax.random.key(0), second_order=True)
        flat, unravel = ravel_pytree(z0)  # sorted by site name: this test's own order
        h = np.asarray(jax.hessian(lambda f: potential_gen(data)(unravel(f)))(flat), dtype=np.float64)
        guide = getattr(autoguide, guide_name)(spec.numpyro_model, init_loc_fn=init_to_value(values=latent))
        (params, described) = _sample._initial_spreads(spec, guide, data, latent, jax.random.key(0))
        numpyro.handlers.seed(guide, rng_seed=0)(data)
        # which of this test's scalars each of the guide's is (by site and index)
        mine = {(site, i): int(k) for site, v in unravel(jnp.arange(flat.size, dtype=flat.dtype)).items()
                for i, k in enumerate(np.ravel(v))}  # fmt: skip
        theirs = guide._unpack_latent(jnp.arange(flat.size, dtype=flat.dtype))
        perm = np.empty(flat.size, int)
        for site, v in theirs.items():
            for i, k in enumerate(np.ravel(v)):
                perm[int(k)] = mine[(site, i)]
    assert list(theirs)[0] == "theta" and sorted(theirs) != list(theirs)  # the two orders differ here
    if guide_name == "AutoDiagonalNormal":
        expected = np.minimum(1 / np.sqrt(np.diag(h)), 0.1)[perm]
        np.testing.assert_allclose(np.asarray(params["auto_scale"]), expected, rtol=1e-4)
        return
    cov = np.linalg.inv(h)[np.ix_(perm, perm)]
    sd = np.sqrt(np.diag(cov))
    tril = np.asarray(params["auto_scale_tril"], dtype=np.float64)
    got = tril @ tril.T
    got_sd = np.sqrt(np.diag(got))
    assert (sd > 0.1).any() and (sd < 0.1).any()  # some are scaled down, some not
    np.testing.assert_allclose(got_sd, np.minimum(sd, 0.1), rtol=1e-3)
    np.testing.assert_allclose(got / np.outer(got_sd, got_sd), cov / np.outer(sd, sd), atol=1e-3)
    assert np.abs(cov / np.outer(sd, sd) - np.eye(len(sd))).max() > 0.9  # strongly correlated terms
    assert described == "inverse Hessian at the start (scaled down to sds ≤ init_scale)"


@pytest.mark.slow  # about 23 s (a hierarchical MAP fit, a Hessian start and 300 SVI steps)
def test_hierarchical_svi_with_the_default_priors_starts_no_wider_than_autonormal():
    """At z = 0 the likelihood does not depend on a population spread τ, so the Hessian's curvature for log τ is the
    prior's alone: started there (3.5), the first draws overflowed and SVI crashed on 3 of 3 keys with the default
    HalfNormal(0.5) priors (it ran before the Hessian start). Starts are capped at AutoNormal's 0.1."""
    import numpyro.infer

    from plasticinfer.bayes import _sample

    data = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.5, "w": -0.05}), key=jax.random.key(0), n_subjects=4,
                               inverse_temperature=1.0, trials_per_block=20).data  # fmt: skip
    model = pi.PlasticityModel.create(pi.TaylorRule.from_terms({"x*r": 0.0, "w": 0.0}), pi.ChoiceCircuit(2),
                                      pi.BernoulliChoice(1.0, learn_temperature=False), n_trajectories=4,
                                      initial_weights={"w": jnp.zeros((1, 2))})  # fmt: skip
    start = pi.fit(model, data, steps=50, progress=False, fit_initial_weights=False).model
    spec, method, data, latent = _sample.prepare(start, data, hierarchical=bayes.Hierarchical(), method=bayes.SVI())
    guide = numpyro.infer.autoguide.AutoNormal(spec.numpyro_model)
    with jax.numpy_dtype_promotion("standard"):
        spreads, _ = _sample._initial_spreads(spec, guide, data, latent, jax.random.key(0))
    assert spreads and max(float(jnp.max(v)) for v in spreads.values()) <= 0.1
    assert float(jnp.min(spreads["theta_mu_auto_scale"])) < 0.1  # the data do set the population means' spreads
    post = bayes.sample(start, data, key=jax.random.key(2), hierarchical=bayes.Hierarchical(),
                        method=bayes.SVI(steps=300, draws=50), warn=False)  # fmt: skip
    assert np.isfinite(post.loss_history).all()
    # a mean-field guide on a hierarchical model: the under-stated spreads its check cannot see are said
    said = [m for m in post.diagnostics() if "guide is mean-field" in m]
    assert len(said) == 1 and "SVI's AutoNormal guide" in said[0] and "0.36×" in said[0]
    post.idata.posterior.attrs["svi_check"] = json.dumps({**post.svi_check(), "guide": "AutoMultivariateNormal"})
    assert not [m for m in post.diagnostics() if "guide is mean-field" in m]


def test_svi_start_and_check_follow_the_guides_prefix_and_init_scale():
    """An AutoNormal with another prefix got no Hessian start while its record said it had, and a check over 0
    scalars: 12× too wide with no warning. A guide given its own init_scale keeps it."""
    import functools

    from numpyro.infer.autoguide import AutoNormal

    model, data, priors, mean, sd = _precise_problem()
    # without the clip (whose bias, 1.06–1.19×, blurs the comparison; see the test above): from the Hessian start
    # 1.01× the exact sd, from AutoNormal's 0.1 start 4.3×
    post = bayes.sample(model, data, key=jax.random.key(12), priors=priors, warn=False,
                        method=bayes.SVI(guide=functools.partial(AutoNormal, prefix="q"), draws=2000, clip_norm=np.inf))  # fmt: skip
    check = post.svi_check()
    assert check["initial_spread"] == "Hessian diagonal at the start" and check["scalars"] == 1
    assert post.draws("theta").std() == pytest.approx(sd, rel=0.05)
    own = bayes.sample(model, data, key=jax.random.key(12), priors=priors, warn=False,
                       method=bayes.SVI(guide=functools.partial(AutoNormal, init_scale=0.05), steps=300, draws=2000))  # fmt: skip
    assert own.svi_check()["initial_spread"] == "AutoNormal's init_scale (0.05)"
    assert own.svi_check()["n_spread"] == 1  # 300 steps from 0.05 do not reach 0.0026, and the check says so


# ---------------------------------------------------------------------------------------------
# 2. SBC rank uniformity: the nominal false-alarm rate on exactly uniform ranks
# ---------------------------------------------------------------------------------------------


def _ranks_result(ranks, n_rank_draws):
    d, k = ranks.shape
    z = np.zeros((d, k))
    return CalibrationResult([f"p{j}" for j in range(k)], z, ranks, n_rank_draws, np.ones((d, k), bool), 0.9, z, z,
                             np.zeros(d, int), np.ones(d), 1.0)  # fmt: skip


@pytest.mark.parametrize("n_rank_draws", [30, 99])
def test_uniformity_rejects_uniform_ranks_at_the_nominal_rate(n_rank_draws):
    """Ranks uniform on 0 … n_rank_draws (31 values: bins of 3 and 4 values), 2000 datasets, 300 replicates: the old
    equal-width χ² rejected 83 % and the KS test of discrete ranks 65 % at the 5 % level (n_rank_draws=30)."""
    rng = np.random.default_rng(1)
    p_chi2, p_ks = [], []
    for _ in range(300):
        u = _ranks_result(rng.integers(0, n_rank_draws + 1, (2000, 1)), n_rank_draws).uniformity()
        p_chi2.append(u.loc["p0", "p_chi2"])
        p_ks.append(u.loc["p0", "p_ks"])
    # 300 replicates: the rate's sd is 1.3 %, so 5 % ± 3.5 % holds by chance 99.3 % of the time (and always here: fixed seed)
    assert 0.015 <= np.mean(np.array(p_chi2) < 0.05) <= 0.085
    assert 0.015 <= np.mean(np.array(p_ks) < 0.05) <= 0.085


def test_uniformity_still_rejects_non_uniform_ranks_and_is_reproducible():
    rng = np.random.default_rng(2)
    n = 30
    over = _ranks_result(np.minimum(rng.integers(0, n + 1, (300, 1)), rng.integers(0, n + 1, (300, 1))), n)  # biased
    ends = _ranks_result(np.where(rng.random((300, 1)) < 0.5, rng.integers(0, 4, (300, 1)), rng.integers(27, 31, (300, 1))), n)
    for res in (over, ends):  # a biased and an overconfident posterior
        u = res.uniformity()
        assert u.loc["p0", "p_chi2"] < 1e-6 and u.loc["p0", "p_ks"] < 1e-6, u
    uniform = _ranks_result(rng.integers(0, n + 1, (500, 3)), n)
    a, b = uniform.uniformity(), uniform.uniformity()
    assert a.equals(b)  # the KS randomisation has a fixed seed
    assert list(a["df"]) == [9, 9, 9, 27]
    # fewer rank values than bins: one bin per value
    assert _ranks_result(rng.integers(0, 5, (100, 1)), 4).uniformity().loc["p0", "df"] == 4


def test_rank_plot_draws_each_bin_against_its_own_expectation():
    """Every rank value 0 … 100 once per 7 datasets: perfectly uniform ranks. 101 values fall in bins of 10 and 11 values,
    so the bars differ (70 or 77); each must sit on its bin's expected line (an equal-width histogram with one flat
    line drew uniform ranks as alternately too few and too many) and span exactly its rank values."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.patches import Rectangle, StepPatch

    res = _ranks_result(np.repeat(np.arange(101), 7)[:, None], 100)
    fig = res.plot()
    ax = fig.axes[0]
    bars = [p for p in ax.patches if type(p) is Rectangle]
    heights = np.array([b.get_height() for b in bars])
    assert sorted(set(heights)) == [70, 77]
    line = [p for p in ax.patches if isinstance(p, StepPatch) and not p.get_fill()][0]
    np.testing.assert_array_equal(heights, line.get_data().values)
    assert line.get_zorder() > max(b.get_zorder() for b in bars)  # drawn over the bars, not hidden behind them
    lefts = np.array([b.get_x() for b in bars])
    widths = np.array([b.get_width() for b in bars])
    np.testing.assert_array_equal(np.r_[lefts, lefts[-1] + widths[-1]], np.r_[lefts[0], lefts + widths])
    assert lefts[0] == 0 and lefts[-1] + widths[-1] == 101 and widths.sum() == 101
    assert res.uniformity().loc["p0", "chi2"] == 0.0  # the test and the plot use the same bins
    with pytest.raises(pi.ModelError, match="bins=0"):
        res.uniformity(bins=0)
    import matplotlib.pyplot as plt

    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# 3. Divergence advice for hierarchical fits
# ---------------------------------------------------------------------------------------------


def _choice_model(n, temp=1.0, terms=("x*r", "w")):
    return pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({t: 0.0 for t in terms}), pi.ChoiceCircuit(2), pi.BernoulliChoice(temp, learn_temperature=False),
        n_trajectories=n, initial_weights={"w": jnp.zeros((1, 2))},
    )  # fmt: skip


@pytest.fixture(scope="module")
def choice_data():
    syn = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.3, "w": -0.1}), key=jax.random.key(0), n_subjects=2,
                              trials_per_block=20, inverse_temperature=1.0)  # fmt: skip
    return syn.data


def _posterior_with_divergences(data, hierarchical, stuck=False, method=None):
    """A Posterior of prior draws with NUTS sample statistics in which 3 of 20 transitions diverged (``stuck``: and
    every draw hit the tree depth, and the second chain sits 5 away from the first)."""
    spec = ModelSpec(_choice_model(2), bayes.Priors(), hierarchical)
    with jax.numpy_dtype_promotion("standard"):
        draws = Predictive(spec.numpyro_model, num_samples=20)(jax.random.key(3), None)
    draws = {k: np.asarray(v).reshape((2, 10) + np.shape(v)[1:]) for k, v in draws.items()}
    if stuck:
        draws = {k: v + np.where(np.arange(2) == 1, 5.0, 0.0).reshape((2,) + (1,) * (v.ndim - 1)) for k, v in draws.items()}
    diverging = np.zeros((2, 10), bool)
    diverging[0, :3] = True
    stats = {"diverging": diverging, "reached_max_treedepth": np.full((2, 10), stuck), "step_size": np.full((2, 10), 0.1)}
    ll = np.zeros((2, 10) + tuple(data.observations.shape[:2]))
    return bayes.Posterior.build(spec, method or bayes.NUTS(), data, draws, stats, ll, 1.0)


def test_divergence_advice_fits_a_hierarchical_fit(choice_data):
    hier = _posterior_with_divergences(choice_data, bayes.Hierarchical(rule=True, observation=False))
    msg = next(m for m in hier.diagnostics() if "divergent" in m)
    assert "use a hierarchical (non-centred) fit" not in msg  # it is one already
    assert "already non-centred" in msg and "theta_mu" in msg and "theta_tau" in msg and "too narrow" in msg
    assert "target_accept=0.95" in msg and "subjects" in msg and "population_scale" in msg
    flat = _posterior_with_divergences(choice_data, None)
    msg = next(m for m in flat.diagnostics() if "divergent" in m)
    assert "use a hierarchical (non-centred) fit" in msg and "target_accept=0.95" in msg


def test_sampler_advice_starts_from_the_runs_own_settings(choice_data):
    """The advice said "Raise NUTS(target_accept=0.95)" and "NUTS(warmup=1000, samples=1000)" whatever the run had
    used, so a run at 0.95 with 1000 + 1000 was told to do what it had done. Now: the next target (0.95, then 0.99;
    none past it) and at least twice the run's warmup and draws; a loaded posterior (settings as text) too."""
    import dataclasses

    hier = bayes.Hierarchical(rule=True, observation=False)
    said = " ".join(_posterior_with_divergences(choice_data, hier, stuck=True).diagnostics())  # NUTS(): 0.8, 500 + 500
    assert "Raise NUTS(target_accept=0.95)," in said and "NUTS(warmup=1000, samples=1000)" in said
    run = bayes.NUTS(warmup=800, samples=1000, target_accept=0.95)
    post = _posterior_with_divergences(choice_data, hier, stuck=True, method=run)
    for p in (post, dataclasses.replace(post, method=repr(run), _summary_cache={})):  # as loaded: the repr
        said = " ".join(p.diagnostics())
        assert "Raise NUTS(target_accept=0.99) (this run: 0.95)," in said and "NUTS(warmup=1600, samples=2000)" in said
        assert "NUTS(target_accept=0.95, dense_mass=True, max_tree_depth=12)" in said  # tree depth: keeps the run's target
    assert bayes.NUTS(target_accept=np.float64(0.95)).target_accept.__class__ is float  # so its repr reads back
    older = dataclasses.replace(post, method="NUTS(warmup=800, samples=1000, target_accept=np.float64(0.95))", _summary_cache={})
    assert "Raise NUTS(target_accept=0.99) (this run: 0.95)," in " ".join(older.diagnostics())  # a file saved before that
    said = " ".join(_posterior_with_divergences(choice_data, None, method=bayes.NUTS(target_accept=0.99)).diagnostics())
    assert "Raise NUTS(target_accept" not in said and "With the acceptance target already at 0.99, tighten the priors" in said


def test_sampler_advice_on_the_command_line_names_its_options(choice_data):
    """`plasticinfer fly --hierarchical` printed the sampler's Python advice (\"Raise NUTS(target_accept=0.95)\",
    \"NUTS(warmup=1000, samples=1000)\") to a user with no Python session; the command line now has --target-accept,
    and every remedy reads as its option, or is marked as Python."""
    import re

    from plasticinfer._cli_common import in_command_line_terms

    hier = _posterior_with_divergences(choice_data, bayes.Hierarchical(rule=True, observation=False), stuck=True)
    said = hier.diagnostics()
    assert [any(w in m for m in said) for w in ("divergent", "tree depth", "R-hat")] == [True, True, True], said
    for m in map(in_command_line_terms, said):
        for call in re.finditer(r"\b(NUTS|Priors|fit|init|identifiability|hierarchical_fit|checkpoint)[(=]", m):
            before = m[: call.start()]
            marker = before.rfind("in Python")  # the call must sit in the clause that the marker opens
            assert marker >= 0 and not re.search(r"[.;]\s|\)\s*[,.;]", before[marker:]), (call.group(0), m)
    text = " ".join(map(in_command_line_terms, said))
    assert "Raise --target-accept to 0.95" in text and "--warmup 1000 --draws 1000" in text
    assert "target_accept=0.8, dense_mass=True, max_tree_depth=12" in text  # keeps the run's settings (NUTS() here)


# ---------------------------------------------------------------------------------------------
# 4 and 5. Posterior files: the model they were sampled with, and deterministic bytes
# ---------------------------------------------------------------------------------------------


def _svi_posterior(data, key=2):
    method = bayes.SVI(steps=20, draws=20, particles=1)
    return bayes.sample(_choice_model(2), data, key=jax.random.key(key), priors=bayes.Priors(observation=None), method=method,
                        warn=False, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def saved_posterior(choice_data, tmp_path_factory):
    post = _svi_posterior(choice_data)
    path = tmp_path_factory.mktemp("post") / "post.nc"
    post.save(path)
    return post, path


def test_identical_runs_save_identical_bytes(choice_data, saved_posterior, tmp_path):
    post, path = saved_posterior
    again = _svi_posterior(choice_data)
    again.save(tmp_path / "again.nc")
    assert (tmp_path / "again.nc").read_bytes() == path.read_bytes()
    assert post.seconds > 0  # the wall time stays on the object …
    back = bayes.Posterior.load(path, like=_choice_model(2), priors=bayes.Priors(observation=None))
    assert np.isnan(back.seconds)  # … and is not in the file
    assert "seconds" not in back.idata.posterior.attrs and "created_at" not in back.idata.posterior.attrs
    assert "wall time not saved" in repr(back) and "nan" not in repr(back)


def test_load_refuses_a_model_other_than_the_one_sampled(saved_posterior):
    post, path = saved_posterior
    priors = bayes.Priors(observation=None)
    back = bayes.Posterior.load(path, like=_choice_model(2), priors=priors)  # built the same way (other warm start): fine
    np.testing.assert_array_equal(back.draws("theta"), post.draws("theta"))
    with pytest.raises(DataError) as e:  # a fixed inverse temperature of 5, sampled with 1: it loaded silently
        bayes.Posterior.load(path, like=_choice_model(2, temp=5.0), priors=priors)
    assert "observation.log_inverse_temperature (held, not sampled)" in str(e.value) and "1.6094" in str(e.value)
    with pytest.raises(DataError) as e:  # 3 subjects: refused for the priors before
        bayes.Posterior.load(path, like=_choice_model(3), priors=priors)
    assert "trajectories (subjects): file has 2, like= has 3" in str(e.value)
    assert "initial_weights.w" in str(e.value) and "priors=" not in str(e.value)
    with pytest.raises(DataError, match=r"terms: file has 2 \['x\*r', 'w'\], like= has 3"):
        bayes.Posterior.load(path, like=_choice_model(2, terms=("x*r", "w", "x")), priors=priors)
    with pytest.raises(DataError, match="observation: file has BernoulliChoice"):
        bayes.Posterior.load(path, like=_choice_model(2).__class__(
            _choice_model(2).rule, pi.ChoiceCircuit(2), pi.BernoulliChoice(1.0, learn_temperature=False, lapse=0.1),
            _choice_model(2).initial_weights), priors=priors)  # fmt: skip
    for problem in ("fixed values", "starting values of sampled parameters may differ"):
        assert problem in str(e.value)  # what to do


def test_load_of_a_file_without_the_model_record(choice_data, saved_posterior, tmp_path):
    """A file written before posteriors recorded their model: still read with like=, and still refused for a
    different number of trajectories (recorded then), with a message that names it, not the priors."""
    post, _ = saved_posterior
    old = type(post)(post.idata.copy(), post.spec, post.method, post.seconds)
    for name in old.idata.groups():
        ds = getattr(old.idata, name)
        ds.attrs = {k: v for k, v in ds.attrs.items() if not k.startswith("model_") and k not in ("rule", "network", "observation")}
    old.idata.constant_data = old.idata.constant_data.drop_vars([v for v in old.idata.constant_data.data_vars if v.startswith("model.")])
    path = old.save(tmp_path / "old.nc")
    priors = bayes.Priors(observation=None)
    back = bayes.Posterior.load(path, like=_choice_model(2), priors=priors)
    np.testing.assert_array_equal(back.draws("theta"), post.draws("theta"))
    with pytest.raises(DataError, match="trajectories \\(subjects\\): file has 2, like= has 3"):
        bayes.Posterior.load(path, like=_choice_model(3), priors=priors)
    assert json.loads(back.idata.posterior.attrs["model"])["n_trajectories"] == 2


def test_a_damaged_posterior_file_is_refused_by_name(saved_posterior, tmp_path):
    """The model record cut short gave a bare JSONDecodeError; with the term list gone the file was said to hold
    another model. Both are one FileFormatError naming the file."""
    from plasticinfer.errors import FileFormatError

    post, _ = saved_posterior
    priors = bayes.Priors(observation=None)
    for what, edit in (("cut", lambda a: a.update(model_parameters=a["model_parameters"][:20])),
                       ("gone", lambda a: a.pop("model_terms"))):  # fmt: skip
        bad = type(post)(post.idata.copy(), post.spec, post.method, post.seconds)
        attrs = dict(bad.idata.posterior.attrs)
        edit(attrs)
        bad.idata.posterior.attrs = attrs
        path = bad.save(tmp_path / f"{what}.nc")
        with pytest.raises(FileFormatError, match=rf"{what}\.nc: a damaged or incomplete posterior"):
            bayes.Posterior.load(path, like=_choice_model(2), priors=priors)


def test_a_hierarchical_fly_summary_says_next_to_its_probabilities_when_the_sampler_has_not_converged(choice_data, monkeypatch):
    """The fly report prints this summary: a sampler's failed checks must stand beside the probabilities drawn from it,
    not only on stderr; and a probability of 1 from n draws says only that every draw fell below 0."""
    from plasticinfer.fly._hierarchical import PopulationPosterior

    hier = _posterior_with_divergences(choice_data, bayes.Hierarchical(rule=True, observation=False))
    term = str(hier.idata.posterior["theta"]["term"].values[-1])
    pop = PopulationPosterior(hier, "test", ["a", "b"], decay_term=term)
    text = str(pop)
    warning = text.index("WARNING: the sampler has not converged, so the probabilities below are not reliable")
    assert "3 of 20 draws ended in a divergent transition" in text[warning:] and text.index("P(population decay") > warning
    monkeypatch.setattr(PopulationPosterior, "probability_decay_negative", lambda self: 1.0)
    assert f"P(population decay μ({term}) < 0) = 1 (all 20 draws below 0)" in str(pop)
    monkeypatch.setattr(PopulationPosterior, "probability_decay_negative", lambda self: 0.25)
    assert f"P(population decay μ({term}) < 0) = 0.250;" in str(pop)


def test_svi_check_names_each_scalar_by_its_site_subject_and_term():
    from plasticinfer.bayes._sample import _scalar_label

    model = pi.PlasticityModel.create(pi.TaylorRule.from_terms({"x*r": 0.0, "w": 0.0}), pi.ChoiceCircuit(2),
                                      pi.BernoulliChoice(1.0, learn_temperature=False), n_trajectories=4,
                                      initial_weights={"w": jnp.zeros((1, 2))})  # fmt: skip
    spec = ModelSpec(model, bayes.Priors(), bayes.Hierarchical())
    assert _scalar_label(spec, "theta_z", (3, 0)) == "theta_z[3, x*r]"  # subject index, then the term's name
    assert _scalar_label(spec, "theta_mu", (1,)) == "theta_mu[w]"
    assert _scalar_label(spec, "bias_mu", ()) == "bias_mu"
    assert _scalar_label(spec, "not_a_site", (2, 1)) == "not_a_site[2, 1]"
