"""A lab's own files, as a stranger brought them: each case once loaded wrong numbers without a word (a transposed
choice_order, one variable read as two, a blank session reordering sessions, a (neuron, time) recording) or escaped
with a third-party error; now it warns, loads right, or is refused with the file, the row and what to do."""

from __future__ import annotations

import subprocess
import sys
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io

import plasticinfer as pi
from plasticinfer.data import FileFormatError, SchemaError


def _blocks(tmp_path, co, name):
    folder = tmp_path / name
    folder.mkdir()
    scipy.io.savemat(folder / "choice_order.mat", {"choice_order": co})
    scipy.io.savemat(folder / "reward_order.mat", {"reward_order": np.where(co == 1, 1, 0)})
    return folder / "choice_order.mat"


def test_a_transposed_choice_order_warns_that_its_trials_would_interleave(tmp_path):
    co = np.array([[1, 2, 1, 2], [2, 2, 1, 1], [1, 1, 2, 2]]).T  # 4 trials per block × 3 blocks, as the layout wants
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the right layout loads without a warning
        ok = pi.load(_blocks(tmp_path, co, "ok"))
    assert ok["choice"].values[0].tolist() == [0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    assert ok["block"].values[0].tolist() == [1] * 4 + [2] * 4 + [3] * 4
    with pytest.warns(pi.PlasticInferWarning, match=r"choice_order is 3 × 4, read as 4 blocks of 3 trials.*transpose"):
        pi.load(_blocks(tmp_path, co.T, "transposed"))


def test_one_mat_or_hdf5_variable_is_never_read_as_two_schema_variables(tmp_path):
    mat = tmp_path / "s.mat"
    scipy.io.savemat(mat, {"choice": np.array([0, 1, 1, 0.0]), "reward": np.array([1, 0, 0, 0.0])})
    # 'reward' mapped to choice while reward is still read by its own name: the rewards became the choices
    with pytest.raises(SchemaError, match=r"s\.mat.*variable 'reward' would be read as both 'choice' and 'reward'"):
        pi.load(mat, columns={"choice": "reward"})
    with pytest.raises(SchemaError, match=r"variable 'choice' would be read as both 'choice' and 'block'"):
        pi.load(mat, columns={"block": "choice"})
    assert pi.load(mat)["reward"].values[0].tolist() == [1, 0, 0, 0]  # unmapped, as before
    h5 = tmp_path / "s.h5"
    with h5py.File(h5, "w") as f:
        f["c"], f["r"] = np.array([0, 1, 1, 0.0]), np.array([1, 0, 0, 0.0])
    with pytest.raises(SchemaError, match=r"s\.h5.*dataset path '/c' would be read as both 'choice' and 'reward'"):
        pi.load(h5, mapping={"choice": "/c", "reward": "/c"})
    table = tmp_path / "t.csv"
    pd.DataFrame({"side": [0, 1], "rewarded": [1, 0]}).to_csv(table, index=False)
    with pytest.raises(SchemaError, match=r"column 'side' would be read as both 'choice' and 'reward'.*columns="):
        pi.load(table, columns={"choice": "side", "reward": "side"})


def test_a_blank_session_is_refused_by_row_not_used_to_reorder_sessions(tmp_path):
    text = "subject,session,trial,choice,reward\na,2,1,1,1\na,2,2,1,1\na,1,1,0,0\na,1,2,0,0\n"
    (tmp_path / "ok.csv").write_text(text)
    ok = pi.load(tmp_path / "ok.csv")  # sessions in numeric order: session 1's choices first
    assert ok["choice"].values[0].tolist() == [0, 0, 1, 1]
    (tmp_path / "blank.csv").write_text(text + "a,,3,0,1\n")
    with pytest.raises(SchemaError, match=r"blank\.csv', column 'session', row 4 .*Fill in the session"):
        pi.load(tmp_path / "blank.csv")


def test_a_neuron_by_time_recording_warns_and_a_mismatch_says_how_arrays_are_read(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "rec.h5"
    with h5py.File(path, "w") as f:
        f["x"], f["y"] = rng.random((5, 200)), rng.random((5, 200))  # 5 neurons × 200 time bins (suite2p's layout)
        f["x2"], f["y2"] = rng.random((3, 200)), rng.random((5, 200))
        f["xt"], f["yt"] = rng.random((200, 5)), rng.random((200, 5))
    with pytest.warns(pi.PlasticInferWarning, match=r"read as 5 trials of 200 inputs and 200 neurons.*\(neuron, time\)"):
        pi.load(path, mapping={"input": "/x", "activity": "/y"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = pi.load(path, mapping={"input": "/xt", "activity": "/yt"})  # (trial, neuron): no warning
    assert dict(ds.sizes)["trial"] == 200 and dict(ds.sizes)["post"] == 5
    with pytest.raises(SchemaError, match=r"\(1, 3\) but activity has \(1, 5\).*read as \(trial, neuron\)"):
        pi.load(path, mapping={"input": "/x2", "activity": "/y2"})


def test_zero_padded_one_two_codes_are_told_to_store_nan(tmp_path):
    path = tmp_path / "pad.mat"
    choice = np.array([[1, 2, 2, 1], [2, 1, 0, 0.0]])  # 1/2 codes; the second subject's session ends with 0s
    scipy.io.savemat(path, {"choice": choice, "reward": np.array([[1, 0, 1, 0], [0, 1, 0, 0.0]])})
    with pytest.raises(SchemaError, match=r"Every 0 ends its row.*store NaN there instead.*read the 0s as choices"):
        pi.load(path)
    choice[1, 2:] = np.nan
    scipy.io.savemat(path, {"choice": choice, "reward": np.array([[1, 0, 1, 0], [0, 1, 0, 0.0]])})
    assert pi.load(path)["trial_mask"].values.sum(axis=1).tolist() == [4, 2]
    # a 0 inside a row is no padding: the hint is not given
    scipy.io.savemat(path, {"choice": np.array([[1, 0, 2, 1.0]]), "reward": np.array([[1, 0, 1, 0.0]])})
    with pytest.raises(SchemaError) as e:
        pi.load(path)
    assert "Every 0 ends its row" not in str(e.value)


def test_a_repeated_header_is_refused_not_half_read(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("subject,trial,choice,reward,choice\na,1,0,1,1\na,2,1,0,0\n")
    with pytest.raises(SchemaError, match=r"dup\.csv': the header names 'choice' more than once"):
        pi.load(path)


def test_sample_lengths_that_differ_are_refused_by_the_schema(tmp_path):
    with pytest.raises(SchemaError, match=r"same number of samples per trial.*input \[3\], activity \[4\]"):
        pi.neural_dataset([np.zeros((5, 3, 2))], [np.zeros((5, 4, 2))])
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["x"], f["y"] = np.zeros((1, 5, 3, 2)), np.zeros((1, 5, 4, 2))
    with pytest.raises(SchemaError, match=r"s\.h5.*same number of samples"):
        pi.load(path, mapping={"input": "/x", "activity": "/y"})
    ds = pi.neural_dataset([np.ones((5, 3, 2))], [np.ones((5, 3, 4))])  # equal samples still load
    assert dict(ds.sizes)["sample"] == 3


def test_a_column_of_lists_is_refused_by_row(tmp_path):
    path = tmp_path / "wide.parquet"
    pd.DataFrame({"subject": ["a", "b"], "choice": [[0, 1, 1], [1, 0]], "reward": [[1, 0, 1], [0, 1]]}).to_parquet(path)
    with pytest.raises(SchemaError, match=r"column 'choice', row 0 .*one choice code per row.*explode"):
        pi.load(path)


def test_text_codes_as_variable_length_strings_and_v73_char_columns(tmp_path):
    h5 = tmp_path / "codes.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("c", data=["L", "R", "R", "L"], dtype=h5py.string_dtype())
        f["cb"], f["r"] = np.array([b"L", b"R", b"R", b"L"]), np.array([1, 0, 1, 0.0])
    for c in ("/c", "/cb"):  # variable-length (how h5py stores str) and fixed-length: the same choices
        ds = pi.load(h5, mapping={"choice": c, "reward": "/r"}, choice_codes={"L": 0, "R": 1})
        assert ds["choice"].values[0].tolist() == [0, 1, 1, 0]
    # MATLAB v7.3: a 4 × 1 char column is four codes (v5 reads it so), a 3 × 2 char matrix three ids
    mat = tmp_path / "v73.mat"
    with h5py.File(mat, "w", userblock_size=512) as f:
        for name, rows in (("choice", ["L", "R", "R", "L"]), ("subject", ["m1", "m1", "m2", "m2"])):
            d = f.create_dataset(name, data=np.array([[ord(ch) for ch in row] for row in rows], np.uint16).T)
            d.attrs["MATLAB_class"] = np.bytes_("char")
        d = f.create_dataset("reward", data=np.array([[1, 0, 1, 0.0]]))
        d.attrs["MATLAB_class"] = np.bytes_("double")
    with open(mat, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file".ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM")
    ds = pi.load(mat, choice_codes={"L": 0, "R": 1})
    assert ds["subject"].values.tolist() == ["m1", "m2"]
    assert ds["choice"].values.tolist() == [[0, 1], [1, 0]]


def test_true_false_choices_take_the_codes_they_are_written_with(tmp_path):
    path = tmp_path / "tf.csv"
    path.write_text("subject,trial,choice,reward\na,1,TRUE,1\na,2,FALSE,0\na,3,TRUE,0\n")
    assert pi.load(path, choice_codes={"TRUE": 1, "FALSE": 0})["choice"].values[0].tolist() == [1, 0, 1]
    assert pi.load(path, choice_codes={"true": 0, "false": 1})["choice"].values[0].tolist() == [0, 1, 0]


def test_a_loader_called_directly_names_its_file(tmp_path):
    path = tmp_path / "probs.csv"
    path.write_text("subject,trial,choice,reward,p_reward_0,p_reward_1\na,1,0,1,50,50\n")
    with pytest.raises(SchemaError, match=r"^file '.*probs\.csv': variable 'p_reward'"):
        pi.data.load_table(path)
    h5 = tmp_path / "nan.h5"
    with h5py.File(h5, "w") as f:
        f["x"], f["y"] = np.ones((3, 2)), np.array([[1.0], [np.nan], [1.0]])
    with pytest.raises(SchemaError, match=r"^file '.*nan\.h5': variable 'activity'"):
        pi.data.load_hdf5(h5, mapping={"input": "/x", "activity": "/y"})


def test_a_file_that_is_not_utf8_says_so(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("subject,trial,choice,reward\nMüller,1,0,1\n".encode("latin-1"))
    with pytest.raises(FileFormatError, match=r"latin\.csv' is not UTF-8 text.*Save it as UTF-8"):
        pi.load(path)


def test_the_cli_maps_the_new_messages_to_its_options(tmp_path):
    mat = tmp_path / "s.mat"
    scipy.io.savemat(mat, {"choice": np.array([0, 1, 1, 0.0]), "reward": np.array([1, 0, 0, 0.0])})
    proc = subprocess.run([sys.executable, "-m", "plasticinfer.cli", "inspect", str(mat), "--map", "choice=reward"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "would be read as both 'choice' and 'reward'" in proc.stderr and "--map" in proc.stderr
    assert "columns=" not in proc.stderr, proc.stderr


def test_r_write_csv_row_names_are_dropped_as_write_table_ones_are(tmp_path):
    (tmp_path / "wcsv.csv").write_text('"","subject","trial","choice","reward"\n"1","A",0,1,1\n"2","A",1,0,0\n')
    (tmp_path / "wtable.csv").write_text('"subject","trial","choice","reward"\n"1","A",0,1,1\n"2","A",1,0,0\n')
    for name in ("wcsv.csv", "wtable.csv"):
        ds = pi.load(tmp_path / name)
        assert "Unnamed: 0" not in ds.coords and ds["choice"].values.tolist() == [[1, 0]], name
    # an unnamed first column whose values repeat is data, not row names: kept
    (tmp_path / "kept.csv").write_text(",subject,choice,reward\nx,a,0,1\nx,a,1,0\n")
    assert pi.load(tmp_path / "kept.csv")["Unnamed: 0"].values.tolist() == ["x"]  # one value per subject: a subject coordinate


def test_a_struct_is_named_as_one_and_a_subject_in_two_files_names_both(tmp_path):
    scipy.io.savemat(tmp_path / "st.mat", {"data": {"choice": np.array([0, 1.0]), "reward": np.array([1, 0.0])}})
    with pytest.raises(FileFormatError, match=r"holds \['data' \(a struct: its fields cannot be mapped"):
        pi.load(tmp_path / "st.mat")
    folder = tmp_path / "flies"
    folder.mkdir()
    for name in ("a", "b"):
        scipy.io.savemat(folder / f"{name}.mat", {"choice": np.array([0, 1.0]), "reward": np.array([1, 0.0]),
                                                  "subject": np.array(["m1", "m1"])})
    with pytest.raises(SchemaError, match=r"subject 'm1' is in both '.*a\.mat' and '.*b\.mat'"):
        pi.load(folder)
