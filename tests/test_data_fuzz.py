"""Fuzzing: random bytes and random tables into every loader; only plasticinfer's errors may come out."""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plasticinfer as pi
from plasticinfer import PlasticInferError

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LOADERS = {
    ".csv": lambda p: pi.data.load_table(p),
    ".parquet": lambda p: pi.data.load_table(p),
    ".mat": lambda p: pi.data.load_mat(p),
    ".nwb": lambda p: pi.data.load_nwb(p),
    ".h5": lambda p: pi.data.load_hdf5(p, {"choice": "choice", "reward": "reward"}),
    ".nc": lambda p: pi.data.load_netcdf(p),
    ".txt": lambda p: pi.load(p),
}

# Headers that make random bytes look like the real thing, so the parsers get past the first check.
PREFIXES = [b"", b"\x89HDF\r\n\x1a\n", b"MATLAB 5.0 MAT-file", b"PAR1", b"choice,reward\n"]


def _call(loader, path: Path):
    """Run a loader; a result must be a valid dataset, an error must be plasticinfer's own."""
    try:
        ds = loader(path)
    except PlasticInferError:
        return None
    pi.validate(ds)
    return ds


@pytest.mark.parametrize("suffix", sorted(LOADERS))
@SETTINGS
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=600))
def test_random_bytes_raise_only_our_errors(suffix, prefix, body):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(prefix + body)
        _call(LOADERS[suffix], path)
        assert [p.name for p in Path(tmp).iterdir()] == [path.name]  # nothing written beside it


@pytest.mark.parametrize("suffix", [".h5", ".mat", ".nc", ".nwb"])
@SETTINGS
@given(cut=st.floats(0.05, 0.95))
def test_truncated_valid_files_raise_only_our_errors(suffix, cut, tmp_path_factory):
    ds = pi.behaviour_dataset([[0, 1, 1, 0] * 10], [[1.0, 0.0, 1.0, 0.0] * 10])
    base = tmp_path_factory.getbasetemp() / f"valid{suffix}"
    if not base.exists():
        _write_valid(ds, base)
    data = base.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"cut{suffix}"
        path.write_bytes(data[: int(len(data) * cut)])
        _call(LOADERS[suffix], path)


def _write_valid(ds, path):
    if path.suffix == ".nc":
        pi.save_netcdf(ds, path)
    elif path.suffix == ".h5":
        import h5py

        with h5py.File(path, "w") as f:
            f["choice"] = ds["choice"].values[0]
            f["reward"] = ds["reward"].values[0]
    elif path.suffix == ".mat":
        import scipy.io

        scipy.io.savemat(path, {"choice": ds["choice"].values[0], "reward": ds["reward"].values[0]})
    else:
        from datetime import datetime, timezone

        import pynwb

        nwb = pynwb.NWBFile(session_description="s", identifier="i",
                            session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
        nwb.add_trial_column("choice", "c")
        nwb.add_trial_column("reward", "r")
        for t, (c, r) in enumerate(zip(ds["choice"].values[0], ds["reward"].values[0])):
            nwb.add_trial(start_time=float(t), stop_time=t + 0.5, choice=int(c), reward=float(r))
        with pynwb.NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)


CELLS = st.one_of(
    st.integers(-3, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "a", "left", "1", "2.0", "nan", " 0 "]),
    st.none(),
    st.booleans(),
)
COLUMNS = ["choice", "reward", "subject", "trial", "block", "session", "p_reward_0", "p_reward_1", "extra", "cue"]
CLEAN = {  # cells that a well-formed table would hold
    "choice": st.sampled_from([0, 1]),
    "reward": st.floats(-10, 10),
    "subject": st.sampled_from(["a", "b", "7"]),
    "block": st.integers(1, 3),
    "session": st.sampled_from(["s1", "s2"]),
    "p_reward_0": st.one_of(st.floats(0, 1), st.just(float("nan"))),
    "p_reward_1": st.floats(0, 1),
    "extra": CELLS,
}


@st.composite
def tables(draw):
    """Half the tables are clean (they must load), half have random cells anywhere."""
    n = draw(st.integers(0, 8))
    dirty = draw(st.booleans())
    names = draw(st.lists(st.sampled_from(COLUMNS if dirty else list(CLEAN)), max_size=7, unique=True))
    if not dirty or draw(st.booleans()):
        names = list(dict.fromkeys(["choice", "reward"] + names))
    data = {}
    for c in names:
        cells = CELLS if dirty or c not in CLEAN else CLEAN[c]
        data[c] = draw(st.lists(cells, min_size=n, max_size=n))
    if not dirty and draw(st.booleans()):
        data["trial"] = draw(st.permutations(range(n)))
    return pd.DataFrame(data), dirty


def _check_loaded(ds, df):
    if ds is None:
        return
    mask = ds["trial_mask"].values
    assert int(mask.sum()) == len(df)  # every row is one real trial, none invented
    assert set(np.unique(ds["choice"].values[mask])) <= {0, 1}
    assert np.isfinite(ds["reward"].values).all()
    np.testing.assert_allclose(ds["reward"].values.sum(), pd.to_numeric(df["reward"]).sum())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables())
def test_random_tables_raise_only_our_errors(table):
    df, dirty = table
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "t.csv"
        df.to_csv(csv, index=False)
        _check_loaded(_call(LOADERS[".csv"], csv), df)
        try:
            ds = pi.from_dataframe(df)
        except PlasticInferError:
            if not dirty and len(df):
                raise  # a clean, non-empty table must load
            ds = None
        _check_loaded(ds, df)
        pq = Path(tmp) / "t.parquet"
        try:
            df.astype(str).to_parquet(pq)
        except Exception:  # pyarrow cannot store every random frame; not our concern
            return
        _check_loaded(_call(LOADERS[".parquet"], pq), df)


@SETTINGS
@given(
    choice=st.lists(st.one_of(st.integers(-1, 3), st.floats(allow_nan=True, allow_infinity=True)), max_size=6),
    reward=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6),
)
def test_random_arrays_raise_only_our_errors(choice, reward):
    for build in (
        lambda: pi.behaviour_dataset([choice], [reward]),
        lambda: pi.data.from_matrices(np.array(choice, dtype=float), np.array(reward, dtype=float)),
    ):
        try:
            ds = build()
        except PlasticInferError:
            continue
        pi.validate(ds)
        assert np.isfinite(ds["reward"].values).all()
