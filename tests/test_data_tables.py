"""Tidy trial tables: CSV and Parquet round trips, column mapping, choice codes, bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest

import plasticinfer as pi
from plasticinfer.data import FileFormatError, SchemaError


def _table() -> pd.DataFrame:
    """Two subjects, ragged, trials shuffled within the file, 1-based choice codes."""
    rows = [
        ("m1", 2, 1, 2, 1.0, 0.8), ("m1", 1, 1, 1, 0.0, 0.8), ("m2", 1, 1, 2, 1.0, 0.3),
        ("m1", 3, 2, 2, 0.0, 0.2), ("m2", 2, 2, 1, 0.0, 0.7),
    ]
    df = pd.DataFrame(rows, columns=["mouse", "trial", "block", "animal_response", "outcome", "p_right"])
    df["room"] = ["A", "A", "B", "A", "B"]  # constant per subject -> subject coordinate
    df["rt"] = [0.5, 0.4, 0.9, 0.3, 0.8]  # varies -> trial coordinate
    return df


MAPPING = {"subject": "mouse", "choice": "animal_response", "reward": "outcome", "p_reward_1": "p_right"}


def _check_table_dataset(ds):
    assert list(ds["subject"].values) == ["m1", "m2"]
    np.testing.assert_array_equal(ds["trial_mask"].values, [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(ds["choice"].values, [[0, 1, 1], [1, 0, -1]])  # 1/2 -> 0/1, sorted by trial
    np.testing.assert_array_equal(ds["reward"].values, [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(ds["block"].values, [[1, 1, 2], [1, 2, -1]])
    np.testing.assert_array_equal(ds["trial_number"].values, [[1, 2, 3], [1, 2, -1]])
    np.testing.assert_allclose(ds["p_reward"].values[0, :, 1], [0.8, 0.8, 0.2])
    assert np.isnan(ds["p_reward"].values[..., 0]).all()  # unknown -> NaN
    assert list(ds["room"].values) == ["A", "B"] and ds["room"].dims == ("subject",)
    np.testing.assert_allclose(ds["rt"].values[0], [0.4, 0.5, 0.3])
    assert ds.attrs["choice_coding"] == "1-based"


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".txt"])
def test_table_with_column_mapping(tmp_path, suffix):
    path = tmp_path / f"trials{suffix}"
    df = _table()
    if suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    ds = pi.data.load_table(path, columns=MAPPING, attrs={"license": "CC0"})
    _check_table_dataset(ds)
    assert ds.attrs["source"] == str(path) and ds.attrs["license"] == "CC0"
    assert pi.load(path, columns=MAPPING)["choice"].equals(ds["choice"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_through_to_dataframe(tmp_path, suffix):
    ds = pi.data.load_table(_write(tmp_path, _table()), columns=MAPPING)
    out = tmp_path / f"again{suffix}"
    table = pi.data.to_dataframe(ds)
    table.to_parquet(out) if suffix == ".parquet" else table.to_csv(out, index=False)
    back = pi.data.load_table(out)
    for name in ("choice", "reward", "trial_mask", "block", "trial_number", "p_reward", "rt"):
        np.testing.assert_array_equal(back[name].values, ds[name].values, err_msg=name)
    assert list(back["room"].values) == ["A", "B"]


def test_single_subject_without_trial_column_keeps_file_order(tmp_path):
    path = tmp_path / "session7.csv"
    pd.DataFrame({"choice": [1, 0, 1], "reward": [1, 0, 0]}).to_csv(path, index=False)
    ds = pi.data.load_table(path)
    assert list(ds["subject"].values) == ["session7"]
    np.testing.assert_array_equal(ds["choice"].values, [[1, 0, 1]])
    assert "trial_number" not in ds.coords


def test_text_choice_codes(tmp_path):
    df = pd.DataFrame({"choice": ["left", "right", "left"], "reward": [1, 0, 1]})
    path = _write(tmp_path, df)
    with pytest.raises(SchemaError, match=r"row 0.*found 'left'.*choice_codes"):
        pi.data.load_table(path)
    ds = pi.data.load_table(path, choice_codes={"left": 0, "right": 1})
    np.testing.assert_array_equal(ds["choice"].values, [[0, 1, 0]])


def test_sessions_order_trials_within_subject():
    df = pd.DataFrame({
        "subject": ["a"] * 4, "session": ["s1", "s1", "s2", "s2"], "trial": [2, 1, 1, 2],
        "choice": [0, 1, 1, 1], "reward": [0.0, 1.0, 0.5, 0.25],
    })
    ds = pi.from_dataframe(df)
    np.testing.assert_array_equal(ds["reward"].values, [[1.0, 0.0, 0.5, 0.25]])
    assert ds["session"].dims == ("subject", "trial")


def _write(tmp_path, df, name="t.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


BASE = {"subject": ["a", "a", "b"], "trial": [1, 2, 1], "choice": [0, 1, 1], "reward": [1.0, 0.0, 1.0]}


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"choice": None}, r"required column 'choice' is missing.*columns=\{'choice'"),
        ({"reward": None}, r"required column 'reward' is missing"),
        ({"choice": [0, 3, 1]}, r"column 'choice', row 1.*known choice code.*found 3"),
        ({"choice": [0, -1, 1]}, r"column 'choice', row 1.*found -1"),
        ({"choice": [0, np.nan, 1]}, r"column 'choice', row 1"),
        ({"reward": [1.0, np.nan, 0.0]}, r"column 'reward', row 1.*finite"),
        ({"reward": [1.0, np.inf, 0.0]}, r"column 'reward', row 1.*found inf"),
        ({"reward": [1.0, "lots", 0.0]}, r"column 'reward', row 1.*found 'lots'"),
        ({"trial": [1, -2, 1]}, r"column 'trial', row 1.*integer >= 0.*found -2"),
        ({"trial": [1, 1.5, 1]}, r"column 'trial', row 1.*found 1.5"),
        ({"trial": [1, np.nan, 1]}, r"column 'trial', row 1"),
        ({"trial": [1, 1, 1]}, r"column 'trial', row 1.*unique.*'a'"),
        ({"block": [0, 1, 1]}, r"column 'block', row 0.*>= 1"),
        ({"subject": ["a", None, "b"]}, r"column 'subject', row 1"),
        ({"p_reward_0": [0.5, 1.5, 0.5]}, r"'p_reward'.*\[0, 1\]"),
        ({"trial_mask": [1, 1, 1]}, r"clash with schema names"),
    ],
)
def test_bad_tables(tmp_path, change, pattern):
    data = dict(BASE)
    for key, value in change.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = _write(tmp_path, pd.DataFrame(data))
    with pytest.raises(SchemaError, match=pattern):
        pi.data.load_table(path)


def test_mapping_errors(tmp_path):
    path = _write(tmp_path, pd.DataFrame(BASE))
    with pytest.raises(SchemaError, match=r"column 'animal_response' \(mapped to 'choice'\) not found"):
        pi.data.load_table(path, columns={"choice": "animal_response"})
    with pytest.raises(SchemaError, match=r"unknown schema name 'choise'"):
        pi.data.load_table(path, columns={"choise": "choice"})


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(FileFormatError, match=r"empty.csv' is empty"):
        pi.data.load_table(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("choice,reward\n")
    with pytest.raises(FileFormatError, match="no rows"):
        pi.data.load_table(header_only)
    with pytest.raises(FileFormatError, match="not found"):
        pi.data.load_table(tmp_path / "nope.csv")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 definitely not parquet")
    with pytest.raises(FileFormatError, match=r"broken.parquet' could not be read"):
        pi.data.load_table(broken)


def test_from_matrices_pads_trailing_nan():
    choice = np.array([[0, 1, 1], [1, np.nan, np.nan]])
    reward = np.array([[1, 0, 1], [0, np.nan, np.nan]], dtype=float)
    ds = pi.data.from_matrices(choice, reward, subjects=["x", "y"])
    np.testing.assert_array_equal(ds["trial_mask"].values, [[1, 1, 1], [1, 0, 0]])
    with pytest.raises(SchemaError, match=r"subject 'y', trial 2"):
        pi.data.from_matrices(np.array([[0, 1, 1], [1, np.nan, 0]]), reward, subjects=["x", "y"])
    with pytest.raises(SchemaError, match="disagree in shape"):
        pi.data.from_matrices(choice, reward[:, :2])


# --- property: any ragged behaviour dataset survives table and netCDF round trips -------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def ragged_subjects(draw):
    n_subj = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(1, 12), min_size=n_subj, max_size=n_subj))
    choice = [draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)) for n in lengths]
    reward = [draw(st.lists(st.floats(-5, 5, allow_subnormal=False), min_size=n, max_size=n)) for n in lengths]
    block = [sorted(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))) for n in lengths]
    return choice, reward, block


@settings(max_examples=20, deadline=None)
@given(data=ragged_subjects())
def test_round_trips_preserve_every_real_trial(data):
    import tempfile
    from pathlib import Path

    choice, reward, block = data
    ds = pi.behaviour_dataset(choice, reward, block=block, subjects=[f"s{i}" for i in range(len(choice))])
    back = pi.from_dataframe(pi.data.to_dataframe(ds))
    for name in ("choice", "reward", "trial_mask", "block"):
        np.testing.assert_array_equal(back[name].values, ds[name].values, err_msg=name)
    with tempfile.TemporaryDirectory() as tmp:
        again = pi.data.load_netcdf(pi.save_netcdf(ds, Path(tmp) / "d.nc"))
    np.testing.assert_array_equal(again["reward"].values, ds["reward"].values)
    for i, c in enumerate(choice):  # padding sits after each subject's own trials, and only there
        assert ds["trial_mask"].values[i].sum() == len(c)
        np.testing.assert_array_equal(ds["choice"].values[i, : len(c)], c)


def test_choice_codes_that_share_an_option_or_name_a_missing_one_are_refused():
    df = pd.DataFrame({"subject": ["a"] * 4, "choice": list("LRLR"), "reward": [1, 0, 1, 0]})
    with pytest.raises(SchemaError, match=r"choice_codes gives no code for option\(s\) \[1\] of 0 … 1 \(L and R all go to option 0\)"):
        pi.data.from_dataframe(df, choice_codes={"L": 0, "R": 0})
    # synonyms may share an option
    ds = pi.data.from_dataframe(df.assign(choice=["L", "R", "left", "R"]), choice_codes={"L": 0, "left": 0, "R": 1})
    np.testing.assert_array_equal(ds["choice"].values[0], [0, 1, 0, 1])
    with pytest.raises(SchemaError, match=r"choice_codes maps R to option 2, but options are 0 … 1"):
        pi.data.from_dataframe(df, choice_codes={"L": 0, "R": 2})
    ds = pi.data.from_dataframe(df, choice_codes={"L": 1, "R": 0})
    np.testing.assert_array_equal(ds["choice"].values[0], [1, 0, 1, 0])


def test_one_subject_of_several_sessions_gets_a_note():
    """Sessions of one subject are concatenated (by design); if they were different animals, say how to split them."""
    df = pd.DataFrame({"session": ["s1"] * 3 + ["s2"] * 3, "trial": [1, 2, 3] * 2, "choice": [0, 1, 0, 1, 1, 0],
                       "reward": [1, 0, 1, 0, 0, 1]})
    with pytest.warns(pi.PlasticInferWarning, match=r"table: there is no subject column, so its 2 sessions are read as one "
                      r"subject \('0'\).*columns=\{'subject': 'session'\}"):  # said on loading, not only by inspect
        ds = pi.data.from_dataframe(df)
    assert ds.sizes["subject"] == 1 and ds.sizes["trial"] == 6
    assert any("several sessions each (up to 2)" in n and "subject=session" in n for n in pi.data.schema_notes(ds))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split = pi.data.from_dataframe(df, columns={"subject": "session"})
        pi.data.from_dataframe(df.assign(subject="fly1"))  # a subject column: its sessions are concatenated as the user said
        pi.data.from_dataframe(df.assign(session="s1", trial=range(1, 7)))  # one session
    assert split.sizes["subject"] == 2
    assert not any("several sessions" in n for n in pi.data.schema_notes(split))
