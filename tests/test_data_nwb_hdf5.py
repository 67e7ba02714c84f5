"""NWB (pynwb fixtures written here), HDF5 with a dataset-path mapping, and `load` dispatch."""

from datetime import datetime, timezone

import h5py
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer.data import FileFormatError, SchemaError

pynwb = pytest.importorskip("pynwb")


def _nwbfile(with_trials=True, subject="mouse7"):
    from pynwb.file import Subject

    nwb = pynwb.NWBFile(
        session_description="two-choice task", identifier="sess-001",
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc), session_id="day1",
        subject=Subject(subject_id=subject) if subject else None,
    )
    if with_trials:
        nwb.add_trial_column("response", "chosen port (1 = left, 2 = right)")
        nwb.add_trial_column("reward", "reward volume (uL)")
        # written out of time order on purpose: the loader sorts by start_time
        for start, resp, rew in ((2.0, 2, 0.0), (0.0, 1, 2.5), (1.0, 2, 2.5), (3.0, 1, 0.0)):
            nwb.add_trial(start_time=start, stop_time=start + 0.5, response=resp, reward=rew)
    return nwb


def _write(nwb, path):
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def test_nwb_trials_round_trip(tmp_path):
    path = _write(_nwbfile(), tmp_path / "s.nwb")
    ds = pi.data.load_nwb(path, columns={"choice": "response"}, attrs={"units_reward": "uL"})
    assert list(ds["subject"].values) == ["mouse7"]
    np.testing.assert_array_equal(ds["choice"].values, [[0, 1, 1, 0]])
    np.testing.assert_array_equal(ds["reward"].values, [[2.5, 2.5, 0.0, 0.0]])
    np.testing.assert_array_equal(ds["start_time"].values, [[0.0, 1.0, 2.0, 3.0]])
    assert ds["session"].values.tolist() == ["day1"]
    assert ds.attrs["units_reward"] == "uL" and ds.attrs["description"] == "two-choice task"
    assert pi.load(path, columns={"choice": "response"})["choice"].equals(ds["choice"])


def test_nwb_trial_without_start_time_is_refused(tmp_path):
    """A NaN start_time used to sort its trial to the end of the learning sequence, silently."""
    nwb = _nwbfile()
    nwb.add_trial(start_time=np.nan, stop_time=5.0, response=1, reward=0.0)
    path = _write(nwb, tmp_path / "s.nwb")
    with pytest.raises(SchemaError, match="trial 4 of the trials table .* start_time nan.*every trial needs a finite one"):
        pi.data.load_nwb(path, columns={"choice": "response"})


def test_nwb_without_trials_table(tmp_path):
    path = _write(_nwbfile(with_trials=False), tmp_path / "empty.nwb")
    with pytest.raises(FileFormatError, match=r"empty.nwb' has no trials table.*add_trial"):
        pi.data.load_nwb(path)


def test_nwb_neural_time_series_binned_by_trials(tmp_path):
    nwb = _nwbfile()
    t = np.arange(0.0, 4.0, 0.25)  # 2 samples per trial window of 0.5 s
    rates = np.stack([t, 2 * t], axis=1)
    stim = np.stack([np.ones_like(t), t, -t], axis=1)
    nwb.add_acquisition(pynwb.TimeSeries(name="rates", data=rates, unit="Hz", timestamps=t))
    module = nwb.create_processing_module("inputs", "stimuli")
    module.add(pynwb.TimeSeries(name="stim", data=stim, unit="a.u.", timestamps=t))
    path = _write(nwb, tmp_path / "neural.nwb")
    ds = pi.data.load_nwb(path, activity="rates", input="stim")
    assert ds.attrs["kind"] == "neural" and ds.attrs["units_activity"] == "Hz"
    assert dict(ds.sizes) == {"subject": 1, "trial": 4, "pre": 3, "post": 2}
    # trial 0 is [0, 0.5): samples t = 0, 0.25 -> mean 0.125
    np.testing.assert_allclose(ds["activity"].values[0, :, 0], [0.125, 1.125, 2.125, 3.125])
    np.testing.assert_allclose(ds["input"].values[0, :, 2], [-0.125, -1.125, -2.125, -3.125])
    with pytest.raises(FileFormatError, match=r"no TimeSeries named 'spikes'.*rates"):
        pi.data.load_nwb(path, activity="spikes", input="stim")


def test_nwb_neural_without_trials_uses_samples(tmp_path):
    nwb = _nwbfile(with_trials=False)
    nwb.add_acquisition(pynwb.TimeSeries(name="y", data=np.ones((5, 2)), unit="Hz", rate=10.0))
    nwb.add_acquisition(pynwb.TimeSeries(name="x", data=np.zeros((5, 3)), unit="a.u.", rate=10.0))
    ds = pi.data.load_nwb(_write(nwb, tmp_path / "n.nwb"), activity="y", input="x")
    assert ds.sizes["trial"] == 5 and ds.sizes["pre"] == 3


def test_nwb_garbage(tmp_path):
    path = tmp_path / "bad.nwb"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(FileFormatError, match="bad.nwb"):
        pi.data.load_nwb(path)


# --- HDF5 ----------------------------------------------------------------------------------


def _h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            d = f.create_dataset(name, data=value)
            if name.endswith("rates"):
                d.attrs["units"] = "spikes/s"
    return path


def test_hdf5_behaviour_round_trip(tmp_path):
    choice = np.array([[1, 2, 2], [2, 1, np.nan]])
    reward = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, np.nan]])
    path = _h5(tmp_path / "b.h5", **{"behav/choice": choice, "behav/reward": reward,
                                     "meta/ids": np.array([b"r1", b"r2"])})
    ds = pi.data.load_hdf5(path, {"choice": "behav/choice", "reward": "/behav/reward", "subject": "meta/ids"})
    assert list(ds["subject"].values) == ["r1", "r2"]
    np.testing.assert_array_equal(ds["choice"].values, [[0, 1, 1], [1, 0, -1]])
    np.testing.assert_array_equal(ds["trial_mask"].values, [[1, 1, 1], [1, 1, 0]])


def test_hdf5_neural_round_trip_infers_recorded(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 4))
    y = rng.normal(size=(2, 6, 3))
    y[1, :, 2] = np.nan  # neuron 2 of subject 1 not recorded
    mask = np.ones((2, 6), bool)
    mask[0, 4:] = False
    path = _h5(tmp_path / "n.hdf5", stim=x, rates=y, mask=mask)
    ds = pi.data.load_hdf5(path, {"input": "stim", "activity": "rates", "trial_mask": "mask"})
    np.testing.assert_array_equal(ds["recorded"].values, [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_allclose(ds["input"].values[0, :4], x[0, :4])
    assert (ds["input"].values[0, 4:] == 0).all()
    assert ds.attrs["units_activity"] == "spikes/s"
    back = pi.data.load_netcdf(pi.save_netcdf(ds, tmp_path / "n.nc"))
    np.testing.assert_array_equal(back["activity"].values, ds["activity"].values)


def test_hdf5_errors(tmp_path):
    path = _h5(tmp_path / "b.h5", choice=np.array([0, 1]), reward=np.array([1.0, 0.0]))
    with pytest.raises(FileFormatError, match=r"dataset 'resp' \(mapped to 'choice'\) not found.*'/choice'"):
        pi.data.load_hdf5(path, {"choice": "resp", "reward": "reward"})
    with pytest.raises(SchemaError, match=r"mapping lacks \['reward'\]"):
        pi.data.load_hdf5(path, {"choice": "choice"})
    with pytest.raises(SchemaError, match=r"unknown schema names \['spikes'\]"):
        pi.data.load_hdf5(path, {"choice": "choice", "reward": "reward", "spikes": "x"})
    big = _h5(tmp_path / "big.h5", choice=np.arange(5000) % 2, reward=np.ones(5000))
    truncated = tmp_path / "trunc.h5"
    truncated.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    with pytest.raises(FileFormatError, match=r"trunc.h5' could not be read as HDF5"):
        pi.data.load_hdf5(truncated, {"choice": "choice", "reward": "reward"})
    with pytest.raises(FileFormatError, match="mapping="):
        pi.load(path)


# --- dispatch ---------------------------------------------------------------------------------


def test_load_says_when_it_cannot(tmp_path):
    odd = tmp_path / "data.xyz"
    odd.write_text("choice,reward\n0,1\n")
    with pytest.raises(FileFormatError, match=r"suffix '.xyz'.*Known suffixes.*\.csv"):
        pi.load(odd)
    with pytest.raises(FileFormatError, match="does not exist"):
        pi.load(tmp_path / "missing.csv")
    good = tmp_path / "ok.csv"
    good.write_text("choice,reward\n0,1\n")
    with pytest.raises(FileFormatError, match="does not take that argument"):
        pi.load(good, mapping={"a": "b"})


def test_a_check_deep_in_a_loader_names_the_file(tmp_path):
    """The validator's message names variable, subject, trial and neuron; through pi.load it names the file too."""
    y = np.random.default_rng(0).normal(size=(1, 20, 3))
    y[0, 10, 1] = np.nan
    path = tmp_path / "rec.h5"
    with h5py.File(path, "w") as f:
        f["x"], f["y"] = np.ones((1, 20, 4)), y
    with pytest.raises(pi.data.SchemaError, match=r"^file '.*rec\.h5': variable 'activity', subject '0' \(index 0\), trial 10, post 1"):
        pi.load(path, mapping={"input": "/x", "activity": "/y"})
