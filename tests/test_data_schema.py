"""The schema: constructors, padding, validate's errors, concatenation, netCDF round trip."""

import os

import numpy as np
import pytest
import xarray as xr

import plasticinfer as pi
from plasticinfer import DataError
from plasticinfer.data import SchemaError


def _behaviour(**kw):
    args = dict(
        subjects=["fly_a", "fly_b"],
        block=[[1, 1, 2, 2], [1, 2]],
        p_reward=[np.tile([0.2, 0.8], (4, 1)), np.tile([0.5, 0.5], (2, 1))],
        subject_coords={"group": ["x", "y"]},
        trial_coords={"rt": [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6]]},
        attrs={"license": "CC-BY-4.0", "citation": "me"},
    )
    args.update(kw)
    return pi.behaviour_dataset([[0, 1, 1, 0], [1, 1]], [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0]], **args)


def _neural(**kw):
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(5, 3)), rng.normal(size=(3, 3))]
    y = [rng.normal(size=(5, 2)), rng.normal(size=(3, 2))]
    return pi.neural_dataset(x, y, **kw)


def test_behaviour_dataset_pads_ragged_subjects_last():
    ds = _behaviour()
    assert dict(ds.sizes) == {"subject": 2, "trial": 4, "option": 2, "feature": 2}
    assert ds["choice"].dtype == np.int64 and ds["reward"].dtype == np.float64
    np.testing.assert_array_equal(ds["trial_mask"].values, [[1, 1, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(ds["choice"].values[1], [1, 1, -1, -1])
    np.testing.assert_array_equal(ds["reward"].values[1], [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(ds["block"].values[1], [1, 2, -1, -1])
    assert np.isnan(ds["p_reward"].values[1, 2:]).all()
    np.testing.assert_array_equal(ds["cue"].values, np.eye(2))
    assert list(ds["subject"].values) == ["fly_a", "fly_b"]
    assert ds["group"].dims == ("subject",) and ds["rt"].dims == ("subject", "trial")
    assert ds.attrs["kind"] == "behaviour" and ds.attrs["license"] == "CC-BY-4.0"
    assert ds.attrs["units_reward"]  # a default is always recorded


def test_neural_dataset_masks_unrecorded_and_padded():
    ds = _neural(recorded=[[True, False], [True, True]], attrs={"units_activity": "Hz"})
    assert dict(ds.sizes) == {"subject": 2, "trial": 5, "pre": 3, "post": 2}
    assert (ds["activity"].values[0, :, 1] == 0).all()  # unrecorded neuron holds 0
    assert (ds["input"].values[1, 3:] == 0).all() and not ds["trial_mask"].values[1, 3:].any()
    assert ds.attrs["units_activity"] == "Hz"


def test_neural_dataset_with_samples():
    x = [np.ones((4, 6, 3))]
    y = [np.ones((4, 6, 2))]
    ds = pi.neural_dataset(x, y)
    assert ds["input"].dims == ("subject", "trial", "sample", "pre")
    assert ds["activity"].dims == ("subject", "trial", "sample", "post")


def test_mismatched_lengths_name_the_subject():
    with pytest.raises(SchemaError, match=r"subject 'b': reward has 1 trials but choice has 2"):
        pi.behaviour_dataset([[0, 1], [1, 0]], [[1.0, 0.0], [1.0]], subjects=["a", "b"])


def test_non_integer_choice_is_rejected():
    with pytest.raises(SchemaError, match=r"choice of subject '0', trial 1: expected an integer"):
        pi.behaviour_dataset([[0.0, 0.5]], [[1.0, 0.0]])


def test_nan_reward_names_variable_subject_and_trial():
    with pytest.raises(SchemaError) as e:
        pi.behaviour_dataset([[0, 1, 0]], [[1.0, np.nan, 0.0]], subjects=["f1"])
    msg = str(e.value)
    assert "'reward'" in msg and "subject 'f1'" in msg and "trial 1" in msg and "finite" in msg


def test_inf_activity_on_recorded_neuron_is_an_error_but_not_on_unrecorded():
    y = np.zeros((3, 2))
    y[1, 1] = np.inf
    with pytest.raises(SchemaError, match=r"'activity'.*trial 1, post 1"):
        pi.neural_dataset([np.zeros((3, 2))], [y])
    ds = pi.neural_dataset([np.zeros((3, 2))], [y], recorded=[[True, False]])
    assert np.isfinite(ds["activity"].values).all()


def test_choice_out_of_range():
    with pytest.raises(SchemaError, match=r"0-based option index in 0..1"):
        pi.behaviour_dataset([[0, 2]], [[1.0, 0.0]])


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (lambda ds: ds.assign_attrs(kind="other"), r"attrs\['kind'\]"),
        (lambda ds: ds.drop_vars("trial_mask"), r"'trial_mask' is missing"),
        (lambda ds: ds.assign(choice=ds["choice"].T), r"'choice' has dims \('trial', 'subject'\)"),
        (lambda ds: ds.assign(reward=ds["reward"].astype(np.int64)), r"'reward' must be float"),
        (lambda ds: ds.assign(choice=ds["choice"].where(ds.trial_mask, 0)), r"padded entry must hold -1"),
        (lambda ds: ds.assign(reward=ds["reward"].where(ds.trial_mask, np.nan)), r"padded entry must hold 0.0"),
        (lambda ds: ds.assign(trial_mask=ds["trial_mask"].copy(data=np.array([[1, 1, 1, 1], [1, 0, 1, 0]], bool))),
         r"real trial follows a padded one"),
        (lambda ds: ds.assign(trial_mask=ds["trial_mask"].copy(data=np.array([[1, 1, 1, 1], [0, 0, 0, 0]], bool))),
         r"has no real trial|padded entry"),
        (lambda ds: ds.assign_coords(subject=["a", "a"]), r"unique"),
        (lambda ds: ds.assign_coords(block=ds["block"] - 1), r"1-based"),
        (lambda ds: ds.assign_coords(p_reward=ds["p_reward"] * 2), r"\[0, 1\]"),
        (lambda ds: ds.assign(cue=ds["cue"] * np.nan), r"'cue'.*non-finite"),
        (lambda ds: ds.assign_attrs(license=3), r"attrs\['license'\] must be a string"),
        (lambda ds: ds.assign(extra=ds["reward"].where(ds.trial_mask, 0) * np.inf), r"'extra'.*non-finite"),
    ],
)
def test_validate_rejects_broken_behaviour(mutate, pattern):
    ds = _behaviour()
    assert pi.validate(ds) is ds
    with pytest.raises(SchemaError, match=pattern):
        pi.validate(mutate(ds))


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (lambda ds: ds.assign(recorded=ds["recorded"] & False), r"no recorded neuron"),
        (lambda ds: ds.assign(input=ds["input"].where(~ds.trial_mask, np.nan)), r"'input'.*index 0\), trial 0, pre 0"),
        (lambda ds: ds.drop_dims("post"), r"'post' is missing|'activity' is missing"),
        (lambda ds: ds.assign(recorded=ds["recorded"].astype(np.int64)), r"'recorded' must be boolean"),
    ],
)
def test_validate_rejects_broken_neural(mutate, pattern):
    ds = _neural()
    pi.validate(ds)
    with pytest.raises(SchemaError, match=pattern):
        pi.validate(mutate(ds))


def test_padded_and_unrecorded_neural_values_are_never_read():
    ds = _neural(recorded=[[True, False], [True, True]])
    nan_pad = ds.assign(input=ds["input"].where(ds.trial_mask), activity=ds["activity"].where(ds.trial_mask))
    pi.validate(nan_pad)  # NaN on padded trials is allowed: nothing reads it
    unrec = ds.assign(activity=ds["activity"].where(ds["recorded"]))
    pi.validate(unrec)  # NaN on an unrecorded neuron too
    broken = ds.assign(activity=ds["activity"].where(~ds["recorded"] | (ds.trial != 2)))
    with pytest.raises(SchemaError, match=r"'activity', subject '0' \(index 0\), trial 2, post 0"):
        pi.validate(broken)


def test_validate_rejects_non_dataset():
    with pytest.raises(SchemaError, match="xarray.Dataset"):
        pi.validate({"choice": [0, 1]})


def test_errors_are_plasticinfer_data_errors():
    assert issubclass(SchemaError, DataError) and issubclass(pi.data.FileFormatError, DataError)
    assert issubclass(pi.data.DatasetError, DataError) and issubclass(DataError, pi.PlasticInferError)


def test_presentations_schema():
    ds = pi.behaviour_dataset([[1, 0]], [[1.0, 0.0]], presented=[[[0, 1], [0]]])
    np.testing.assert_array_equal(ds["presented"].values[0], [[0, 1], [0, -1]])
    np.testing.assert_array_equal(ds["accepted"].values[0], [[False, True], [True, False]])
    bad = ds.assign(choice=ds["choice"].copy(data=[[0, 0]]))
    with pytest.raises(SchemaError, match="accepted presentation"):
        pi.validate(bad)


def test_concat_subjects_repads():
    a = pi.behaviour_dataset([[0, 1, 1]], [[1.0, 0.0, 1.0]], subjects=["a"])
    b = pi.behaviour_dataset([[1]], [[0.0]], subjects=["b"])
    ds = pi.data.concat_subjects([b, a])
    assert list(ds["subject"].values) == ["b", "a"]
    np.testing.assert_array_equal(ds["choice"].values, [[1, -1, -1], [0, 1, 1]])
    np.testing.assert_array_equal(ds["block"].values, [[1, -1, -1], [1, 1, 1]])
    with pytest.raises(SchemaError, match="unique"):
        pi.data.concat_subjects([a, a])


def test_netcdf_round_trip_behaviour_and_neural(tmp_path):
    for ds in (_behaviour(), _neural(recorded=[[True, False], [True, True]]),
               pi.behaviour_dataset([[1, 0]], [[1.0, 0.0]], presented=[[[0, 1], [0]]])):
        path = pi.save_netcdf(ds, tmp_path / "ds.nc")
        back = pi.data.load_netcdf(path)
        xr.testing.assert_identical(back, ds)
        for name in ds.variables:
            assert back[name].dtype.kind == ds[name].dtype.kind or ds[name].dtype.kind in "OU", name
    assert [p.name for p in tmp_path.iterdir()] == ["ds.nc"]  # no temp file left


def test_save_netcdf_is_atomic_and_refuses_invalid(tmp_path):
    good = _behaviour()
    target = tmp_path / "out.nc"
    pi.save_netcdf(good, target)
    before = target.read_bytes()
    bad = good.assign(reward=good["reward"].where(good.trial_mask, np.nan))
    with pytest.raises(SchemaError):
        pi.save_netcdf(bad, target)
    unstorable = good.assign_attrs(true_rule={"x": 1})
    with pytest.raises(SchemaError, match="true_rule"):
        pi.save_netcdf(unstorable, target)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.nc"]


def test_save_netcdf_keeps_true_attrs(tmp_path):
    ds = _neural().assign_attrs(true_coeffs=np.array([1.0, -1.0]), true_rule="oja")
    back = pi.data.load_netcdf(pi.save_netcdf(ds, tmp_path / "n.nc"))
    np.testing.assert_array_equal(back.attrs["true_coeffs"], [1.0, -1.0])
    assert back.attrs["true_rule"] == "oja"


def test_load_netcdf_of_invalid_file_names_the_file(tmp_path):
    ds = _behaviour()
    raw = ds.assign(choice=ds["choice"].where(ds.trial_mask, 5))
    path = tmp_path / "bad.nc"
    raw.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(SchemaError, match="bad.nc"):
        pi.data.load_netcdf(path)


def test_one_subjects_trials_given_as_the_list_of_subjects_are_refused_with_the_fix():
    """A bare 1-D array (or list of codes) is one subject's trials: say to wrap it, not that subject '0' has shape ()."""
    from plasticinfer.data import SchemaError

    for choice, reward in ((np.array([0, 1, 1, 0]), np.array([1.0, 0, 1, 0])), ([0, 1, 1, 0], [1.0, 0, 1, 0])):
        with pytest.raises(SchemaError, match=r"choice is one array of 4 values.*behaviour_dataset\(\[choice\], \[reward\]"):
            pi.behaviour_dataset(choice, reward)
    ds = pi.behaviour_dataset([np.array([0, 1, 1, 0])], [np.array([1.0, 0, 1, 0])])  # the fix the message gives
    assert ds.sizes["subject"] == 1 and ds.sizes["trial"] == 4
