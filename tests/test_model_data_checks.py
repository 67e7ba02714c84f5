"""A model and data that do not fit together are refused before any work, with an error that says what to change.

Each case here used to reach the user as a bare JAX/NumPy/xarray traceback or, worse, as numbers: a binary
choice model scored choices coded 2 (log-likelihoods of +1e53, a "normalized likelihood" of inf), a negative
noise scale was blamed on the learning rate, a reward term on data without reward was "fitted" at its start.
"""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import plasticinfer as pi
from plasticinfer import bayes
from plasticinfer.errors import ComparisonError, DataError, FileFormatError, ModelError, SchemaError

RNG = np.random.default_rng(0)
X = [RNG.standard_normal((10, 4)) for _ in range(2)]
Y = [RNG.standard_normal((10, 2)) for _ in range(2)]
NEURAL = pi.neural_dataset(X, Y)
CHOICE = [RNG.integers(0, 2, 20) for _ in range(2)]
REWARD = [RNG.integers(0, 2, 20).astype(float) for _ in range(2)]
BEHAVIOUR = pi.behaviour_dataset(CHOICE, REWARD)
THREE = pi.behaviour_dataset([RNG.integers(0, 3, 30) for _ in range(2)], [RNG.integers(0, 2, 30).astype(float)] * 2, n_options=3)


def _neural_model(net=None, obs=None, terms=("x*y", "y^2*w", "w"), n=2, learning_rate=0.05):
    return pi.PlasticityModel.create(
        pi.TaylorRule(list(terms), learning_rate=learning_rate), net or pi.FeedForward(4, 2), obs or pi.GaussianActivity(0.5),
        n_trajectories=n, key=jax.random.key(1),
    )


def _choice_model(n_options=2):
    return pi.PlasticityModel.create(
        pi.TaylorRule(["x*r", "w"]), pi.ChoiceCircuit(n_options), pi.BernoulliChoice(1.0, learn_temperature=False),
        n_trajectories=2, initial_weights={"w": jnp.zeros((1, n_options))},
    )


def _fit(model, data, **kw):
    return pi.fit(model, data, steps=2, progress=False, **kw)


# ---- the network against the data's sizes ---------------------------------------------------------------


def test_a_network_with_the_wrong_input_size_is_refused_in_fit_and_sample():
    model = _neural_model(net=pi.FeedForward(5, 2))
    with pytest.raises(ModelError, match=r"FeedForward \(weights \{'w': \(2, 5\)\}\) cannot run on data's inputs \(per trial: \{'x': \(4,\)\}\)"):
        _fit(model, NEURAL)
    with pytest.raises(ModelError, match="cannot run on data's inputs"):
        bayes.sample(model, NEURAL, key=jax.random.key(0))


def test_a_network_with_the_wrong_output_size_is_refused():
    with pytest.raises(ModelError, match=r"output per trial has shape \(3,\) but the recorded activities per trial have shape \(2,\)"):
        _fit(_neural_model(net=pi.FeedForward(4, 3)), NEURAL)


def test_a_neural_model_on_behaviour_data_is_refused():
    with pytest.raises(ModelError, match="FeedForward needs trial input 'x'"):
        _fit(_neural_model(), BEHAVIOUR)


# ---- choices the binary model cannot score ----------------------------------------------------------------


def test_binary_choice_model_refuses_three_option_data():
    with pytest.raises(ModelError, match=r"BernoulliChoice scores a choice between two options, but the network gives \(3,\) drives"):
        _fit(_choice_model(3), THREE)
    # a two-option network meets the same data: it cannot take three cues
    with pytest.raises(ModelError, match=r"ChoiceCircuit .* cannot run on data's inputs \(per trial: \{'cues': \(3, 3\)"):
        _fit(_choice_model(2), THREE)
    # two-option inputs whose choices hold a code 2: named, with where it is
    two = pi.TrialData.from_dataset(BEHAVIOUR)
    choices = np.asarray(two.observations).copy()
    choices[1, 7] = 2
    with pytest.raises(ModelError, match=r"BernoulliChoice scores choices coded 0 or 1, but data has choice 2 at \(trajectory, trial\) = \(1, 7\)"):
        _fit(_choice_model(2), pi.TrialData(two.inputs, jnp.asarray(choices), two.mask))


def test_compare_on_three_option_data_has_no_binary_baseline_and_refuses_binary_hypotheses():
    """Rescorla–Wagner (a binary model) scored +6.7e53 on these data; it now does not apply, while coin flip and
    base rate (any number of options) do, and a binary rule hypothesis is refused by its observation model."""
    from plasticinfer.compare._baselines import standard_baselines

    names = [b.name for b in standard_baselines(pi.TrialData.from_dataset(THREE), None)]
    assert names == ["coin flip", "base rate"]
    assert "Rescorla–Wagner" in [b.name for b in standard_baselines(pi.TrialData.from_dataset(BEHAVIOUR), None)]
    with pytest.raises(ModelError, match=r"BernoulliChoice scores a choice between two options"):
        pi.compare.compare(["x*r"], THREE, steps=2, restarts=1, progress=False)


def test_two_option_data_still_fit():
    result = _fit(_choice_model(2), BEHAVIOUR)
    assert np.isfinite(result.loss_history).all()


def test_poisson_counts_refuse_values_that_are_not_counts():
    data = pi.TrialData.from_dataset(NEURAL)  # activities are real numbers, some negative
    model = _neural_model(obs=pi.PoissonCounts())
    with pytest.raises(ModelError, match=r"PoissonCounts scores spike counts \(non-negative integers\), but data has -?\d"):
        _fit(model, data)
    counts = pi.TrialData(data.inputs, jnp.asarray(RNG.poisson(2.0, (2, 10, 2)), float), data.mask)
    assert np.isfinite(_fit(model, counts).loss_history).all()


# ---- reward terms without a reward ------------------------------------------------------------------------


def test_a_reward_term_on_data_without_reward_is_refused():
    with pytest.raises(ModelError, match=r"reward terms \['x\*r'\], but data has no reward"):
        _fit(_neural_model(terms=("x*y", "x*r")), NEURAL)
    with pytest.raises(ModelError, match="no reward"):
        pi.compare.compare(["x*r + w"], NEURAL, steps=2, restarts=1, key=jax.random.key(0), progress=False)
    # refused before the first fit, naming the hypothesis (it used to fit "x*y" first, after "[1/3] x*y" in the log)
    logged = []
    with pytest.raises(ModelError, match=r"the data of hypothesis 'x\*y \+ x\*r' has no reward"):
        pi.compare.compare(["x*y", "x*y + x*r"], NEURAL, steps=2, restarts=1, key=jax.random.key(0), progress=False,
                           baselines=False, log=logged.append)  # fmt: skip
    assert logged == []
    # a rule that is not fitted may carry inactive reward terms
    assert np.isfinite(_fit(_neural_model(terms=("x*y", "x*r")), NEURAL, fit_rule=False).loss_history).all()
    # a fixed reward term asks nothing of the data: accepted
    rule = pi.TaylorRule(["x*y", "x*r"], fixed=["x*r"], learning_rate=0.05)
    model = pi.PlasticityModel.create(rule, pi.FeedForward(4, 2), pi.GaussianActivity(0.5), n_trajectories=2, key=jax.random.key(1))
    assert np.isfinite(_fit(model, NEURAL).loss_history).all()


# ---- observation-model parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: pi.GaussianActivity(-0.5), "sigma must be positive and finite; got -0.5"),
        (lambda: pi.GaussianActivity(0.0), "sigma must be positive and finite"),
        (lambda: pi.GaussianActivity(np.array([0.5, np.nan])), "sigma must be positive and finite"),
        (lambda: pi.BernoulliChoice(-1.0), "inverse_temperature must be positive and finite"),
        (lambda: pi.BernoulliChoice(1.0, bias=np.inf), "bias must be finite"),
        (lambda: pi.PoissonCounts(dt=0.0), "dt must be positive and finite"),
    ],
)
def test_bad_observation_parameters_are_refused_when_built(build, message):
    with pytest.raises(ModelError, match=message):
        build()


def test_observation_models_still_build_inside_transformations():
    """Under jit/vmap the parameter is a tracer: nothing to check, and nothing must fail."""
    sigma = jax.vmap(lambda s: pi.GaussianActivity(s).sigma)(jnp.array([0.5, 2.0]))
    np.testing.assert_allclose(sigma, [0.5, 2.0], rtol=1e-6)
    beta = jax.jit(lambda b: pi.BernoulliChoice(b).inverse_temperature)(jnp.asarray(3.0))
    np.testing.assert_allclose(beta, 3.0, rtol=1e-6)


# ---- inputs ---------------------------------------------------------------------------------------------------


def test_a_non_finite_input_is_refused_even_on_a_masked_trial():
    data = pi.TrialData.from_dataset(NEURAL)
    x = np.asarray(data.inputs["x"]).copy()
    x[1, 4, 2] = np.inf
    bad = pi.TrialData({"x": jnp.asarray(x)}, data.observations, data.mask)
    with pytest.raises(ModelError, match=r"data.inputs\['x'\] is not finite at \(trajectory, trial\) = \(1, 4\)"):
        _fit(_neural_model(), bad)
    # masked out from trial 4 on, the inf would still reach the gradient through the scan: refused as well
    mask = np.asarray(jnp.broadcast_to(data.mask, data.observations.shape)).copy()
    mask[1, 4:] = False
    with pytest.raises(ModelError, match="set its inputs to 0 if it is padding"):
        _fit(_neural_model(), bad.with_mask(mask))
    x[1, 4, 2] = 0.0  # what the loaders put on padded trials
    assert np.isfinite(_fit(_neural_model(), pi.TrialData({"x": jnp.asarray(x)}, data.observations, mask)).loss_history).all()


# ---- arguments ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"l1": -1.0}, "l1 must be a non-negative number"),
        ({"l1": "0.1"}, "l1 must be a non-negative number"),
        ({"steps": "10"}, "steps must be an integer; got '10'"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"restarts": 2, "key": 0}, "key must be a JAX PRNG key"),
        ({"optimiser": "adam"}, "optimiser must be an optax optimiser"),
    ],
)
def test_fit_refuses_arguments_of_the_wrong_kind(kwargs, message):
    kwargs = {"steps": 2, **kwargs}
    with pytest.raises(ModelError, match=message):
        pi.fit(_neural_model(), NEURAL, progress=False, **kwargs)


def test_fit_accepts_the_usual_argument_types():
    result = pi.fit(_neural_model(), NEURAL, steps=np.int64(2), l1=np.float32(0.01), optimiser=optax.adam(1e-2),
                    restarts=2, key=jax.random.PRNGKey(0), progress=False)
    assert result.loss_history.shape == (2, 2)
    # a wrapped optimiser, a NumPy legacy key and a 0-d JAX integer are fine too
    result = pi.fit(_neural_model(), NEURAL, steps=jnp.asarray(2), optimiser=optax.MultiSteps(optax.adam(1e-2), 2),
                    restarts=2, key=np.asarray(jax.random.PRNGKey(0)), progress=False)
    assert result.loss_history.shape == (2, 2)


def test_an_array_l1_stays_an_array_so_an_l1_path_compiles_once():
    """compare's sparse-rule path passes each strength as an array: made a float, every strength recompiled."""
    from plasticinfer._fit import check_l1

    assert isinstance(check_l1(jnp.asarray(0.1)), jax.Array) and check_l1(0.1) == 0.1
    with pytest.raises(ModelError, match="non-negative"):
        check_l1(jnp.asarray(-0.1))
    assert jax.jit(lambda v: check_l1(v) * 2)(jnp.asarray(0.5)) == 1.0  # traced: passed through


def test_fit_refuses_a_rule_in_place_of_a_model():
    with pytest.raises(ModelError, match="fit needs a PlasticityModel"):
        pi.fit(pi.TaylorRule(["x*y"]), NEURAL, steps=2, progress=False)


def test_compare_and_sample_refuse_arguments_of_the_wrong_kind():
    with pytest.raises(ComparisonError, match="l1 must be a non-negative number"):
        pi.compare.compare(["x*r"], BEHAVIOUR, l1=-5.0, steps=2, restarts=1, progress=False)
    with pytest.raises(ComparisonError, match="split must be a split object"):
        pi.compare.compare(["x*r"], BEHAVIOUR, split="heldout", steps=2, restarts=1, progress=False)
    model = _choice_model()
    with pytest.raises(ModelError, match="key must be a JAX PRNG key"):
        bayes.sample(model, BEHAVIOUR, key=0)
    with pytest.raises(ModelError, match=r"priors must be pi.bayes.Priors"):
        bayes.sample(model, BEHAVIOUR, key=jax.random.key(0), priors={"coefficients": 1.0})
    result = _fit(model, BEHAVIOUR)
    with pytest.raises(ModelError, match=r"for a fit's result pass result.model"):
        bayes.sample(result, BEHAVIOUR, key=jax.random.key(0))


# ---- dataset builders -------------------------------------------------------------------------------------------


def test_synthetic_data_from_zero_weights_is_not_taken_for_a_blow_up():
    """The growth check measures against the inputs' scale too: weights that start at 0 have zero activity on trial 0."""
    syn = pi.make_activity_data(pi.TaylorRule.from_equation("x - w", learning_rate=0.05), pi.FeedForward(3, 2),
                                pi.GaussianInputs.isotropic(3), key=jax.random.key(0), n_trials=30, init_scale=0.0)
    assert np.isfinite(np.asarray(syn.clean_activity)).all()
    with pytest.raises(ModelError, match="the true rule blew up"):
        pi.make_activity_data(pi.TaylorRule.from_equation("x*y", learning_rate=10.0), pi.FeedForward(20, 5),
                              pi.GaussianInputs.isotropic(20), key=jax.random.key(0), n_trials=50)


def test_recorded_as_text_is_refused_and_zero_one_accepted():
    with pytest.raises(SchemaError, match=r"recorded must be True/False \(or 0/1\) values; got dtype <U5 with values such as 'False'"):
        pi.neural_dataset(X, Y, recorded=np.array([["False", "True"], ["True", "True"]]))
    ds = pi.neural_dataset(X, Y, recorded=np.array([[0, 1], [1, 1]]))
    assert ds["recorded"].values.tolist() == [[False, True], [True, True]]
    ds = pi.neural_dataset(X, Y, recorded=np.array([[False, True], [True, True]], dtype=object))  # pandas-style bools
    assert ds["recorded"].values.tolist() == [[False, True], [True, True]]


def test_neural_builder_names_input_not_choice():
    with pytest.raises(SchemaError, match="subject '0': activity has 8 trials but input has 10"):
        pi.neural_dataset(X, [Y[0][:8], Y[1]])
    with pytest.raises(SchemaError, match="activity has 3 subjects but input has 2"):
        pi.neural_dataset(X, Y + [Y[0]])


def test_subjects_with_per_trial_cues_concatenate_without_nan_padding():
    def subject(n, name):
        cue = np.broadcast_to(np.eye(2), (n, 2, 2)).copy()
        return pi.behaviour_dataset([RNG.integers(0, 2, n)], [RNG.integers(0, 2, n).astype(float)], cue=[cue], subjects=[name])

    ds = pi.data.concat_subjects([subject(12, "a"), subject(8, "b")])
    assert not np.isnan(ds["cue"].values).any()  # padded with 0, as docs/data-format.md says
    assert np.isfinite(_fit(_choice_model(2), ds).loss_history).all()


def test_p_reward_of_the_wrong_shape_is_refused():
    with pytest.raises(SchemaError, match=r"subject '0': p_reward has shape \(20, 3\); .* shape \(n_trials, 2\)"):
        pi.behaviour_dataset(CHOICE, REWARD, p_reward=[np.full((20, 3), 0.5)] * 2)
    ds = pi.behaviour_dataset(CHOICE, REWARD, p_reward=[np.full((20, 2), 0.5)] * 2)
    assert ds["p_reward"].shape == (2, 20, 2)


# ---- results files ------------------------------------------------------------------------------------------


def test_loading_with_a_template_of_other_settings_is_refused(tmp_path):
    path = _fit(_neural_model(), NEURAL).save(tmp_path / "fit.nc")
    with pytest.raises(DataError, match=r"rule: file has TaylorRule\(.*learning_rate=0.05\), like= has TaylorRule\(.*learning_rate=0.005\)"):
        pi.FitResult.load(path, like=_neural_model(learning_rate=0.005))
    with pytest.raises(DataError, match=r"network: file has FeedForward\(n_pre=4, n_post=2, activation=identity\), like= has .*activation=tanh"):
        pi.FitResult.load(path, like=_neural_model(net=pi.FeedForward(4, 2, jnp.tanh)))
    # how the rule is differentiated is a choice of computation, not of model
    like = pi.forward_mode(_neural_model())
    back = pi.FitResult.load(path, like=like)
    assert back.model.rule.derivative == "forward"


def test_loading_a_file_of_another_kind_names_what_it_holds(tmp_path):
    fit_path = _fit(_neural_model(), NEURAL).save(tmp_path / "fit.nc")
    with pytest.raises(DataError, match=r"fit.nc: not a plasticinfer posterior: the file holds a plasticinfer fit result"):
        bayes.Posterior.load(fit_path, like=_neural_model())
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"not a netCDF file")
    with pytest.raises(FileFormatError, match="garbage.nc: could not be read as a posterior"):
        bayes.Posterior.load(garbage, like=_neural_model())
    post_path = tmp_path / "post.nc"
    az.from_dict(posterior={"theta": np.zeros((1, 5, 2))}).to_netcdf(str(post_path), engine="h5netcdf")
    with pytest.raises(DataError, match=r"post.nc: not a plasticinfer fit result: the file holds an ArviZ posterior"):
        pi.FitResult.load(post_path)
