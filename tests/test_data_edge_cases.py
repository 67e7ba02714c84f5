"""Lab files as they come: each case once loaded silently wrong (shifted columns, merged subjects, swapped
options, a transposed mask) or crashed with a bare traceback; now it loads right or is refused by name."""

from __future__ import annotations

import sys
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io

import plasticinfer as pi
from plasticinfer.data import FileFormatError, SchemaError


def _csv(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _choices(ds):
    m = ds["trial_mask"].values
    return {str(s): ds["choice"].values[i][m[i]].tolist() for i, s in enumerate(ds["subject"].values)}


def test_a_row_with_one_field_too_many_is_refused_not_shifted(tmp_path):
    path = _csv(tmp_path, "subject,trial,choice,reward\nA,1,0,1,0.35\nA,2,1,0,0.41\nB,1,1,1,0.52\n")
    with pytest.raises(FileFormatError, match=r"rows have 5 fields but the header names 4 columns.*repeats \('A', row 1\).*shifted"):
        pi.load(path)
    # R's write.table: unique row names and no header for them: the row names are dropped
    r_rows = _csv(tmp_path, "subject\ttrial\tchoice\treward\n3\tA\t1\t0\t1\n5\tA\t2\t1\t0\n8\tB\t1\t1\t1\n", "r.tsv")
    assert _choices(pi.load(r_rows)) == {"A": [0, 1], "B": [1]}
    # a trailing delimiter after a first column of 0, 1, 2 (pandas' row labels would look like a plain index)
    ds = pi.load(_csv(tmp_path, "trial,choice,reward\n0,0,1,\n1,1,0,\n2,1,1,\n", "first.csv"))
    np.testing.assert_array_equal(ds["reward"].values[0], [1.0, 0.0, 1.0])
    # a trailing delimiter on every row is an empty extra field: read as if it were not there
    ds = pi.load(_csv(tmp_path, "subject,trial,choice,reward\nA,1,0,1,\nA,2,1,0,\nB,1,1,1,\n", "trailing.csv"))
    assert _choices(ds) == {"A": [0, 1], "B": [1]}
    np.testing.assert_array_equal(ds["reward"].values[0, :2], [1.0, 0.0])


def test_spaces_after_the_delimiter_in_header_and_rows(tmp_path):
    ds = pi.load(_csv(tmp_path, "subject, trial, choice, reward\nA, 1, 0, 1\nA, 2, 1, 0\n"))
    assert _choices(ds) == {"A": [0, 1]}


def test_subject_ids_are_read_as_written(tmp_path):
    ds = pi.load(_csv(tmp_path, "subject,choice,reward\n1.1,0,1\n1.1,1,0\n1.10,1,1\n1.10,0,0\n"))
    assert _choices(ds) == {"1.1": [0, 1], "1.10": [1, 0]}
    ds = pi.load(_csv(tmp_path, "subject,trial,choice,reward\n001,1,0,1\n1,2,1,0\n", "zero.csv"))
    assert _choices(ds) == {"001": [0], "1": [1]}
    # a mapped subject column too
    ds = pi.load(_csv(tmp_path, "animal,choice,reward\n007,0,1\n7,1,0\n", "mapped.csv"), columns={"subject": "animal"})
    assert sorted(_choices(ds)) == ["007", "7"]
    # numbers in a DataFrame: whole numbers without ".0"
    assert _choices(pi.from_dataframe(pd.DataFrame(dict(subject=[3.0, 3.0], choice=[0, 1], reward=[1.0, 0.0])))) == {"3": [0, 1]}


@pytest.mark.parametrize(
    "sessions, expected",
    [
        (["2", "10", "1"], [1, 1, 0, 0, 1, 0]),  # by number: 1, 2, 10
        (["2023-05-02", "2023-05-10", "2023-05-01"], [1, 1, 0, 0, 1, 0]),  # by date
        (["pre", "post", "late"], [0, 0, 1, 0, 1, 1]),  # text: as they first appear
        (["1.10", "1.2", "1.1"], [0, 0, 1, 0, 1, 1]),  # '1.1' and '1.10' are one number: as they first appear
        (["2023-05-01 09:00", "2023-05-01 10:00", "2023-05-01 08:30"], [1, 1, 0, 0, 1, 0]),  # by time
        (["2023-05-01 9:00", "2023-05-01 10:00", "2023-05-01 8:30"], [0, 0, 1, 0, 1, 1]),  # not zero-padded: as they appear
    ],
)
def test_sessions_are_ordered_by_number_or_date(tmp_path, sessions, expected):
    s2, s10, s1 = sessions
    rows = [(s2, 1, 0), (s2, 2, 0), (s10, 1, 1), (s10, 2, 0), (s1, 1, 1), (s1, 2, 1)]
    text = "subject,session,trial,choice,reward\n" + "".join(f"A,{s},{t},{c},1\n" for s, t, c in rows)
    ds = pi.load(_csv(tmp_path, text))
    assert _choices(ds)["A"] == expected


def test_dataframe_index_levels_are_columns(tmp_path):
    df = pd.DataFrame(dict(subject=["A", "A", "B", "B"], trial=[1, 2, 1, 2], choice=[0, 1, 1, 0], reward=[1.0, 0, 1, 0]))
    for d in (df.set_index(["subject", "trial"]), df.set_index("subject"), df.set_index("subject", drop=False)):
        assert _choices(pi.from_dataframe(d)) == {"A": [0, 1], "B": [1, 0]}
    # row labels without a name (a filtered frame) are not data
    flipped = pi.from_dataframe(df.iloc[::-1])
    assert list(flipped["subject"].values) == ["B", "A"] and _choices(flipped) == {"A": [0, 1], "B": [1, 0]}
    clash = df.set_index("subject", drop=False)
    clash.index = pd.Index(["X", "X", "Y", "Y"], name="subject")
    with pytest.raises(SchemaError, match="'subject' is both an index level and a column, with different values"):
        pi.from_dataframe(clash)
    # other named levels are row labels, as before: no new metadata
    timed = pi.from_dataframe(df.set_index(pd.Index([0.1, 0.2, 0.3, 0.4], name="time")))
    assert "time" not in timed.coords and _choices(timed) == {"A": [0, 1], "B": [1, 0]}
    # set_index(..., drop=False) with NaN is no clash (NaN != NaN); a column that may hold NaN: reward probabilities
    with_nan = df.assign(p_reward_0=[0.5, np.nan, 0.2, 0.2]).set_index("p_reward_0", drop=False)
    assert _choices(pi.from_dataframe(with_nan.drop(columns="trial").assign(trial=[1, 2, 1, 2])))["B"] == [1, 0]
    # a blank session (here from the index) has no place among the others' order: refused by row
    blank = df.assign(session=[1.0, np.nan, 2.0, 2.0]).set_index("session", drop=False)
    with pytest.raises(SchemaError, match=r"column 'session', row 1 .*Fill in the session"):
        pi.from_dataframe(blank.drop(columns="trial").assign(trial=[1, 2, 1, 2]))


def test_list_valued_metadata_is_kept_as_text():
    df = pd.DataFrame(dict(choice=[0, 1], reward=[1.0, 0.0], licks=[[0.1, 0.2], [0.3]]))
    ds = pi.from_dataframe(df)
    assert list(ds["licks"].values[0]) == ["[0.1, 0.2]", "[0.3]"]


def test_mat_folder_has_one_choice_coding(tmp_path):
    folder = tmp_path / "sessions"
    folder.mkdir()
    scipy.io.savemat(folder / "sessA.mat", {"choice": [1, 2, 2, 1, 2], "reward": [1, 0, 1, 0, 1]})
    scipy.io.savemat(folder / "sessB.mat", {"choice": [1, 1, 1], "reward": [1, 0, 1]})  # only 1s: fits both readings
    assert _choices(pi.load(folder)) == {"sessA": [0, 1, 1, 0, 1], "sessB": [0, 0, 0]}
    scipy.io.savemat(folder / "sessB.mat", {"choice": [0, 1, 0], "reward": [1, 0, 1]})  # truly 0-based
    with pytest.raises(SchemaError, match="0-based in 'sessB.mat'.*1-based in 'sessA.mat'"):
        pi.load(folder)


def test_choices_that_read_both_ways_are_read_0_based_with_a_warning(tmp_path):
    from plasticinfer import errors
    from plasticinfer.data import AmbiguousCodingWarning
    from plasticinfer.data._tables import AMBIGUOUS_CODING

    path = _csv(tmp_path, "choice,reward\n1,1\n1,0\n1,1\n")
    with pytest.warns(AmbiguousCodingWarning, match=r"t\.csv.*coded 1.*read as 0-based.*choice_codes=\{1: 0, 2: 1\}"):
        ds = pi.load(path)
    assert _choices(ds) == {ds["subject"].values[0]: [1, 1, 1]} and ds.attrs["choice_coding"] == AMBIGUOUS_CODING
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        pi.load(path)  # the warning points at this line, the user's, not at the loader's
    (w,) = [w for w in record if issubclass(w.category, AmbiguousCodingWarning)]
    assert (w.filename, w.lineno) == (__file__, line)
    assert issubclass(AmbiguousCodingWarning, pi.PlasticInferWarning) and AmbiguousCodingWarning is errors.AmbiguousCodingWarning
    with warnings.catch_warnings():
        warnings.simplefilter("error", AmbiguousCodingWarning)
        for text in ("choice,reward\n0,1\n1,0\n", "choice,reward\n1,1\n2,0\n"):  # a 0 or a 2 settles the coding
            pi.load(_csv(tmp_path, text, name="settled.csv"))
        pi.load(path, choice_codes={1: 0, 2: 1})  # the user said
    assert _choices(pi.load(path, choice_codes={1: 0, 2: 1})) == {ds["subject"].values[0]: [0, 0, 0]}


def test_a_mat_folder_warns_about_the_coding_only_when_no_file_settles_it(tmp_path):
    from plasticinfer.data import AmbiguousCodingWarning

    folder = tmp_path / "sessions"
    folder.mkdir()
    scipy.io.savemat(folder / "sessA.mat", {"choice": [1, 1], "reward": [1, 0]})
    scipy.io.savemat(folder / "sessB.mat", {"choice": [1, 1, 1], "reward": [1, 0, 1]})
    with pytest.warns(AmbiguousCodingWarning, match=r"folder .*sessions.* no file has a choice code.*choice_codes=\{1: 0, 2: 1\}") as record:
        pi.load(folder)
    assert len([w for w in record if issubclass(w.category, AmbiguousCodingWarning)]) == 1  # once, not per file
    for other, coding in (([1, 0, 1], "0-based"), ([2, 1, 2], "1-based")):
        scipy.io.savemat(folder / "sessA.mat", {"choice": other, "reward": [1, 0, 1]})
        with warnings.catch_warnings():
            warnings.simplefilter("error", AmbiguousCodingWarning)
            ds = pi.load(folder)
        assert ds.attrs["choice_coding"] == coding  # the same for every file, so kept by the concatenation


def test_mat_subject_variable_names_the_rows_of_matrices(tmp_path):
    choice, reward = [[0, 1, 1, 0], [1, 1, 0, 1]], [[1, 0, 1, 0], [0, 1, 1, 0]]
    scipy.io.savemat(tmp_path / "num.mat", {"choice": choice, "reward": reward, "subject": [101, 102]})
    assert list(pi.load(tmp_path / "num.mat")["subject"].values) == ["101", "102"]
    scipy.io.savemat(tmp_path / "names.mat", {"choice": choice, "reward": reward, "subject": np.array(["fly1", "fly2"])})
    assert list(pi.load(tmp_path / "names.mat")["subject"].values) == ["fly1", "fly2"]
    scipy.io.savemat(tmp_path / "bad.mat", {"choice": choice, "reward": reward, "subject": [1, 2, 3]})
    with pytest.raises(SchemaError, match="3 subject ids, but the choice matrix has 2 rows"):
        pi.load(tmp_path / "bad.mat")
    # one id for a file of vectors: every trial's
    scipy.io.savemat(tmp_path / "one.mat", {"choice": [0, 1, 1], "reward": [1, 0, 1], "subject": "fly7"})
    assert _choices(pi.load(tmp_path / "one.mat")) == {"fly7": [0, 1, 1]}


def test_mat_cell_array_of_text_choices(tmp_path):
    scipy.io.savemat(tmp_path / "cells.mat", {"choice": np.array(["L", "R", "R", "L"], dtype=object), "reward": [1, 0, 1, 0]})
    assert _choices(pi.load(tmp_path / "cells.mat", choice_codes={"L": 0, "R": 1})) == {"cells": [0, 1, 1, 0]}
    with pytest.raises(SchemaError, match="found 'L'"):
        pi.load(tmp_path / "cells.mat")


def _neural_h5(path, **extra):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["stim"] = rng.normal(size=(3, 6, 4))
        f["rates"] = rng.normal(size=(3, 6, 2))
        f["rates_samples"] = rng.normal(size=(3, 6, 5, 2))
        for k, v in extra.items():
            f[k] = v
    return path


def test_hdf5_masks_need_their_exact_shape_and_0_1_values(tmp_path):
    rec = np.array([[1, 1], [1, 0], [0, 1]], bool)
    path = _neural_h5(tmp_path / "n.h5", rec=rec, rec_T=rec.T, rec_half=rec * 0.5, ids=np.array([[b"a"], [b"b"], [b"c"]]))
    mapping = {"input": "stim", "activity": "rates"}
    ds = pi.load(path, mapping={**mapping, "recorded": "rec", "subject": "ids"})
    np.testing.assert_array_equal(ds["recorded"].values, rec)
    assert list(ds["subject"].values) == ["a", "b", "c"]
    with h5py.File(path, "r+") as f:
        f["num_ids"] = np.array([101.0, 102.0, 103.0])  # numbers: as in MAT files and DataFrames, '101' not '101.0'
    assert list(pi.load(path, mapping={**mapping, "subject": "num_ids"})["subject"].values) == ["101", "102", "103"]
    one = _neural_h5(tmp_path / "one.h5", rec_col=np.array([[1], [0]], bool))
    with h5py.File(one, "r+") as f:  # one subject: (trial, neuron) arrays, recorded as a column
        f["stim1"], f["rates1"] = f["stim"][0], f["rates"][0]
    ds1 = pi.load(one, mapping={"input": "stim1", "activity": "rates1", "recorded": "rec_col"})
    np.testing.assert_array_equal(ds1["recorded"].values, [[True, False]])
    with pytest.raises(SchemaError, match=r"recorded has shape \(2, 3\).*expected \(3, 2\).*transposed"):
        pi.load(path, mapping={**mapping, "recorded": "rec_T"})
    with pytest.raises(SchemaError, match=r"recorded\[0, 0\] is 0.5; expected 0/1"):
        pi.load(path, mapping={**mapping, "recorded": "rec_half"})


def test_sample_dimension_on_one_side_only_is_refused(tmp_path):
    path = _neural_h5(tmp_path / "n.h5")
    with pytest.raises(SchemaError, match="activity has a 'sample' dimension .* but input has none"):
        pi.load(path, mapping={"input": "stim", "activity": "rates_samples"})


def test_a_results_file_given_as_data_says_so(tmp_path):
    syn = pi.make_activity_data(
        pi.oja(0.05), pi.FeedForward(3, 2), pi.GaussianInputs.isotropic(3), key=__import__("jax").random.key(0),
        n_trajectories=1, n_trials=10,
    )
    model = pi.PlasticityModel.create(
        pi.TaylorRule(["x*y", "w"], learning_rate=0.05), pi.FeedForward(3, 2), pi.GaussianActivity(0.5), key=__import__("jax").random.key(1)
    )
    path = pi.fit(model, syn.data, steps=2, progress=False, convergence_tol=np.inf).save(tmp_path / "results.nc")
    with pytest.raises(SchemaError, match=r"results.nc' holds a plasticinfer fit result \('plasticinfer-fit/\d', written by "
                       r"FitResult.save\), not a dataset"):
        pi.load(path)
    with h5py.File(tmp_path / "post.nc", "w") as f:  # an ArviZ posterior: groups, no root attributes (said "set attrs['kind']")
        f.create_group("posterior").create_dataset("theta", data=np.zeros((1, 2)))
    with pytest.raises(SchemaError, match=r"post.nc' holds an ArviZ posterior .*Posterior.load\(path, like=model\)\), not a dataset"):
        pi.load(tmp_path / "post.nc")


def test_a_damaged_named_dataset_names_its_folder(tmp_path, monkeypatch):
    from plasticinfer.data import _datasets

    folder = tmp_path / _datasets.info("mohanta2022").folder
    folder.mkdir()
    for f in _datasets.info("mohanta2022").files:  # present, so the folder is found; the builder then fails
        (folder / f.path).parent.mkdir(parents=True, exist_ok=True)
        (folder / f.path).write_text("")

    def broken(folder, meta, **options):
        np.loadtxt(folder / "missing_choice_set.csv")

    monkeypatch.setitem(_datasets._BUILDERS, "mohanta2022", broken)
    with pytest.raises(pi.data.DatasetError, match=r"dataset 'mohanta2022' in .*could not be read.*verify=False.*Restore"):
        pi.datasets.load("mohanta2022", path=folder, verify=False)
    monkeypatch.setitem(_datasets._BUILDERS, "mohanta2022", _datasets._mohanta2022)
    with pytest.raises(pi.data.DatasetError, match=r"takes the options \['subset'\]; got \['subsett'\]"):
        pi.datasets.load("mohanta2022", path=folder, verify=False, subsett="training")


def test_command_line_loads_three_options_from_choice_codes(tmp_path, capsys):
    from plasticinfer.cli import run

    path = _csv(tmp_path, "subject,trial,choice,reward\nA,1,0,1\nA,2,2,0\nA,3,1,1\n")
    assert run(["inspect", str(path), "--choice-codes", "0=0,1=1,2=2"]) == 0
    assert "option=3" in capsys.readouterr().out
    assert run(["inspect", str(path), "--choice-codes", "0=0,1=1,2=3"]) == 2
    err = capsys.readouterr().err
    assert "--choice-codes gives no code for option(s) [2]" in err and "choice_codes" not in err.replace("--choice-codes", "")
    # without --choice-codes, codes 0, 1, 2 (or 1, 2, 3) are named as three options, with the option that loads them
    assert run(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "The codes 0, 1, 2 look like 3 options: pass --choice-codes 0=0,1=1,2=2." in err
    one_based = _csv(tmp_path, "choice,reward\n1,1\n3,0\n2,1\n", "one_based.csv")
    with pytest.raises(SchemaError, match=r"codes 1, 2, 3 look like 3 options: pass n_options=3, or choice_codes=\{1: 0, 2: 1, 3: 2\}"):
        pi.load(one_based)
    np.testing.assert_array_equal(pi.load(one_based, n_options=3)["choice"].values[0], [0, 2, 1])
    # codes that are not a run of options keep the general advice
    gaps = _csv(tmp_path, "choice,reward\n0,1\n5,0\n", "gaps.csv")
    with pytest.raises(SchemaError, match=r"found 5\. Pass choice_codes="):
        pi.load(gaps)


def test_metadata_with_a_space_in_its_name_survives_netcdf(tmp_path):
    """netCDF separates coordinate names by spaces: 'reaction time' came back as data and failed validation."""
    path = _csv(tmp_path, "subject,trial,choice,reward,reaction time\nA,1,0,1,0.31\nA,2,1,0,\n")
    ds = pi.load(path)
    back = pi.data.load_netcdf(pi.save_netcdf(ds, tmp_path / "rt.nc"))
    assert "reaction time" in back.coords and "reaction time" not in back.data_vars
    assert back["reaction time"].equals(ds["reaction time"])
    assert "coordinates_with_spaces" not in back.attrs
    assert "reaction time" in pi.data.to_dataframe(back).columns


def test_netcdf3_files_and_integer_masks_load(tmp_path):
    """netCDF-3 (SciPy, older tools) has no boolean type, nor has MATLAB's netCDF writer: 0/1 masks are read as booleans."""
    ds = pi.from_dataframe(pd.DataFrame(dict(subject=["A", "A", "B"], choice=[0, 1, 1], reward=[1.0, 0.0, 1.0])))
    classic = ds.copy()
    for name in list(classic.variables):
        if classic[name].dtype == bool:
            classic[name] = classic[name].astype("int8")
    classic.to_netcdf(tmp_path / "classic.nc", format="NETCDF3_CLASSIC", engine="scipy")
    back = pi.load(tmp_path / "classic.nc")
    assert back["trial_mask"].dtype == bool
    np.testing.assert_array_equal(back["trial_mask"].values, ds["trial_mask"].values)
    assert _choices(back) == _choices(ds) == {"A": [0, 1], "B": [1]}
    (tmp_path / "cut.nc").write_bytes((tmp_path / "classic.nc").read_bytes()[:100])
    with pytest.raises(FileFormatError, match="could not be read as netCDF-3"):
        pi.load(tmp_path / "cut.nc")
    classic["trial_mask"] = classic["trial_mask"] * 2  # not 0/1: left to the validator
    classic.to_netcdf(tmp_path / "two.nc", format="NETCDF3_CLASSIC", engine="scipy")
    with pytest.raises(SchemaError, match="trial_mask' must be boolean"):
        pi.load(tmp_path / "two.nc")


def test_a_folder_named_like_a_file_says_so(tmp_path):
    (tmp_path / "data.h5").mkdir()
    with pytest.raises(FileFormatError, match="is a folder, not a .h5 file"):
        pi.load(tmp_path / "data.h5", mapping={"choice": "c", "reward": "r"})


def test_errors_in_matrices_name_the_matrix_entry():
    with pytest.raises(SchemaError, match=r"choice\[0, 2\] \(subject '0', trial 2, 0-based\).*found -1.0.*store NaN there"):
        pi.data.from_matrices(np.array([[0, 1, -1], [1, 0, 1]]), np.ones((2, 3)))
    with pytest.raises(SchemaError, match=r"choice\[1, 2\] \(subject 'b', trial 2, 0-based\).*found 5.0") as e:
        pi.data.from_matrices(np.array([[0, 1, 1], [1, 0, 5]]), np.ones((2, 3)), subjects=["a", "b"])
    assert "header excluded" not in str(e.value) and "NaN there" not in str(e.value)


def test_mat73_cells_and_structs_are_named_not_skipped_silently(tmp_path):
    from tests.test_data_matlab import write_mat73

    path = tmp_path / "cells.mat"
    write_mat73(path, reward=[1.0, 0.0, 1.0])
    with h5py.File(path, "r+") as f:  # a cell array is an array of object references; a struct is a group
        refs = f.create_group("#refs#")
        cells = [refs.create_dataset(f"c{i}", data=np.array([[76.0]])).ref for i in range(3)]
        f.create_dataset("choice", data=np.array(cells, dtype=h5py.ref_dtype)[None, :])
        f.create_group("session").create_dataset("n", data=np.array([[3.0]]))
    with pytest.raises(FileFormatError, match=r"'choice' is a cell array, which cannot be read from a MATLAB v7.3 file.*-v7"):
        pi.load(path)
    with pytest.raises(FileFormatError, match=r"not found; the file holds \['reward'\] \(and 'choice' \(a cell array\), 'session' \(a struct\), skipped"):
        pi.load(path, columns={"choice": "resp"})


def test_integer_choices_written_with_a_fill_value_load_as_integers(tmp_path):
    """Other tools write padding through _FillValue; xarray then decodes the integers as floats with NaN."""
    ds = pi.from_dataframe(pd.DataFrame(dict(subject=["A", "A", "B"], choice=[0, 1, 1], reward=[1.0, 0.0, 1.0])))
    ds.to_netcdf(tmp_path / "filled.nc", engine="h5netcdf", encoding={"choice": {"_FillValue": -1}, "block": {"_FillValue": -1}})
    back = pi.load(tmp_path / "filled.nc")
    assert back["choice"].dtype == np.int64 and back["block"].dtype == np.int64
    np.testing.assert_array_equal(back["choice"].values, ds["choice"].values)  # padding back at −1
    assert _choices(back) == {"A": [0, 1], "B": [1]}


def test_txt_tables_split_only_at_real_delimiters(tmp_path):
    # csv.Sniffer left free split a one-column file at a letter ("choice" → "c", "hoi", "e")
    from plasticinfer.data._tables import read_table

    one = _csv(tmp_path, "choice\n1\n0\n1\n", "one.txt")
    assert read_table(one).to_dict("list") == {"choice": [1, 0, 1]}
    runs = _csv(tmp_path, "subject choice reward\n  a  1 0\na 0   1\n", "spaces.txt")
    assert read_table(runs, ["subject"]).to_dict("list") == {"subject": ["a", "a"], "choice": [1, 0], "reward": [0, 1]}
    tabs = _csv(tmp_path, "subject\tchoice\treward\nfly 1\t1\t0\nfly 1\t0\t1\n", "tabs.txt")
    assert _choices(pi.load(tabs)) == {"fly 1": [1, 0]}
    colon = _csv(tmp_path, "choice:reward\n0:1\n1:0\n", "colon.txt")
    assert read_table(colon).to_dict("list") == {"choice": [0, 1], "reward": [1, 0]}
    times = _csv(tmp_path, "subject,time,choice,reward\na,12:30,1,0\na,12:31,0,1\n", "times.txt")  # ':' inside values
    assert read_table(times, ["subject"])["time"].tolist() == ["12:30", "12:31"]
    semi = _csv(tmp_path, "choice;reward\n1;0\n0;1\n", "semi.txt")
    np.testing.assert_array_equal(pi.load(semi)["reward"].values[0], [0.0, 1.0])


def test_a_matrix_with_more_rows_than_columns_warns_it_may_be_trial_by_subject(tmp_path):
    rng = np.random.default_rng(0)
    choice = rng.integers(0, 2, (40, 3)).astype(float)  # 40 trials of 3 subjects, stored (trial, subject)
    reward = rng.integers(0, 2, (40, 3)).astype(float)
    path = tmp_path / "lab.mat"
    scipy.io.savemat(path, {"choice": choice, "reward": reward})
    with pytest.warns(pi.PlasticInferWarning, match=r"40 × 3, read as 40 subjects of 3 trials.*transpose"):
        ds = pi.load(path)
    assert ds.sizes["subject"] == 40
    # stored (subject, trial), or with one id per row, the file loads without a warning
    scipy.io.savemat(path, {"choice": choice.T, "reward": reward.T})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pi.load(path).sizes["subject"] == 3
        ids = pi.data.from_matrices(choice, reward, subjects=[f"s{i}" for i in range(40)])
    assert ids.sizes["subject"] == 40
