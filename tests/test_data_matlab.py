"""MATLAB files: v5 and v7.3, generic vectors, Fly{N}.mat presentations, choice_order/reward_order."""

import h5py
import numpy as np
import pytest
import scipy.io

import plasticinfer as pi
from plasticinfer.data import FileFormatError, SchemaError, read_mat


def write_mat73(path, **arrays):
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 with a 512-byte text header, arrays transposed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in arrays.items():
            value = np.asarray(value, dtype=np.float64)
            value = value.reshape(-1, 1) if value.ndim == 1 else value  # MATLAB has no 1-D arrays
            dset = f.create_dataset(name, data=value.T)
            dset.attrs["MATLAB_class"] = np.bytes_(b"double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: plasticinfer tests HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(128, b" "))


def write_mat(path, version, **arrays):
    if version == 5:
        scipy.io.savemat(path, arrays)
    else:
        write_mat73(path, **arrays)


@pytest.mark.parametrize("version", [5, 7.3])
def test_read_mat_keeps_matlab_orientation(tmp_path, version):
    a = np.arange(6.0).reshape(2, 3)
    write_mat(tmp_path / "a.mat", version, a=a)
    np.testing.assert_array_equal(read_mat(tmp_path / "a.mat")["a"], a)


@pytest.mark.parametrize("version", [5, 7.3])
def test_generic_vectors_round_trip(tmp_path, version):
    path = tmp_path / "session.mat"
    choice = np.array([1, 2, 2, 1, 2])
    reward = np.array([0.0, 1.0, 1.0, 0.0, 0.5])
    write_mat(path, version, resp=choice, rew=reward, blk=np.array([1, 1, 2, 2, 2]))
    ds = pi.data.load_mat(path, columns={"choice": "resp", "reward": "rew", "block": "blk"})
    np.testing.assert_array_equal(ds["choice"].values, [choice - 1])
    np.testing.assert_array_equal(ds["reward"].values, [reward])
    np.testing.assert_array_equal(ds["block"].values, [[1, 1, 2, 2, 2]])
    assert list(ds["subject"].values) == ["session"]


@pytest.mark.parametrize("version", [5, 7.3])
def test_generic_matrices_with_nan_padding(tmp_path, version):
    path = tmp_path / "all.mat"
    choice = np.array([[0, 1, 1, 0], [1, 1, np.nan, np.nan]])
    reward = np.array([[1, 0, 1, 0], [0, 1, np.nan, np.nan]])
    write_mat(path, version, choice=choice, reward=reward)
    ds = pi.data.load_mat(path)
    np.testing.assert_array_equal(ds["trial_mask"].values, [[1, 1, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(ds["choice"].values, [[0, 1, 1, 0], [1, 1, -1, -1]])


def _fly_arrays():
    # trials: [odour0 accepted], [odour1 rejected, odour0 accepted], [odour1 accepted]
    X = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=float)
    Y = np.array([1, 0, 1, 1], dtype=float)
    R = np.array([1.0, 0.0, 1.0])
    return X, Y, R


@pytest.mark.parametrize("version", [5, 7.3])
def test_fly_layout_round_trip(tmp_path, version):
    X, Y, R = _fly_arrays()
    write_mat(tmp_path / "Fly3.mat", version, X=X, Y=Y.reshape(-1, 1), R=R.reshape(-1, 1))
    ds = pi.data.load_mat(tmp_path / "Fly3.mat")
    assert list(ds["subject"].values) == ["Fly3"]
    np.testing.assert_array_equal(ds["choice"].values, [[0, 0, 1]])
    np.testing.assert_array_equal(ds["reward"].values, [[1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(ds["presented"].values[0], [[0, -1], [1, 0], [1, -1]])
    np.testing.assert_array_equal(ds["accepted"].values[0], [[1, 0], [0, 1], [1, 0]])
    np.testing.assert_array_equal(ds["cue"].values, np.eye(2))


def test_folder_of_fly_files_in_natural_order(tmp_path):
    X, Y, R = _fly_arrays()
    for n, cut in ((1, 4), (2, 1), (10, 4)):  # Fly2 has one trial only
        k = int(Y[:cut].sum())
        scipy.io.savemat(tmp_path / f"Fly{n}.mat", {"X": X[:cut], "Y": Y[:cut], "R": R[:k]})
    ds = pi.load(tmp_path)
    assert list(ds["subject"].values) == ["Fly1", "Fly2", "Fly10"]
    np.testing.assert_array_equal(ds["trial_mask"].values.sum(1), [3, 1, 3])
    np.testing.assert_array_equal(ds["presentation_mask"].values[1], [[1, 0], [0, 0], [0, 0]])


@pytest.mark.parametrize(
    "arrays, pattern",
    [
        (dict(X=np.array([[1, 1], [0, 1]]), Y=[1, 1], R=[0, 1]), r"X row 0 is \[1.0, 1.0\]; expected a one-hot"),
        (dict(X=np.eye(2), Y=[1, 2], R=[0, 1]), r"Y\[1\] is 2.0"),
        (dict(X=np.eye(2), Y=[1, 1], R=[0]), r"Y accepts 2 presentations but R holds 1 rewards"),
        (dict(X=np.eye(3)[:, :2], Y=[1, 1], R=[0, 1]), r"one row per entry of Y"),
        (dict(X=np.eye(2), Y=[1, 0], R=[1]), r"1 rejections follow the last acceptance.*drop_incomplete=True"),
        (dict(X=np.eye(2), Y=[1, 1], R=[0, np.nan]), r"R\[1\] is nan"),
    ],
)
def test_bad_fly_files(tmp_path, arrays, pattern):
    path = tmp_path / "Fly1.mat"
    scipy.io.savemat(path, arrays)
    with pytest.raises(FileFormatError, match=pattern):
        pi.data.load_mat(path)


def test_fly_drop_incomplete(tmp_path):
    path = tmp_path / "Fly1.mat"
    scipy.io.savemat(path, dict(X=np.eye(2)[[0, 1, 1]], Y=[1, 1, 0], R=[1, 0]))
    ds = pi.data.load_mat(path, drop_incomplete=True)
    np.testing.assert_array_equal(ds["choice"].values, [[0, 1]])


def _session(folder, choice_order, reward_order, version=5):
    folder.mkdir(parents=True)
    write_mat(folder / "choice_order.mat", version, choice_order=np.asarray(choice_order, dtype=np.uint8))
    write_mat(folder / "reward_order.mat", version, reward_order=np.asarray(reward_order, dtype=np.uint8))
    return folder


@pytest.mark.parametrize("version", [5, 7.3])
def test_choice_order_layout(tmp_path, version):
    # 3 trials per block, 2 blocks, session ends after 5 trials
    co = np.array([[1, 2], [2, 2], [2, 0]])
    ro = np.array([[1, 0], [0, 2], [2, 0]])
    folder = _session(tmp_path / "grp" / "20200101T000000_Fly9", co, ro, version)
    ds = pi.data.load_mat(folder / "reward_order.mat")  # either file of the pair works
    assert list(ds["subject"].values) == ["20200101T000000_Fly9"]
    np.testing.assert_array_equal(ds["choice"].values, [[0, 1, 1, 1, 1]])
    np.testing.assert_array_equal(ds["reward"].values, [[1.0, 0.0, 1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(ds["block"].values, [[1, 1, 1, 2, 2]])
    np.testing.assert_array_equal(ds["trial_in_block"].values, [[1, 2, 3, 1, 2]])
    assert list(ds["option_label"].values) == ["code 1", "code 2"]


def test_folder_of_choice_order_sessions(tmp_path):
    _session(tmp_path / "g" / "s1", [[1], [2]], [[1], [0]])
    _session(tmp_path / "g" / "s2", [[2], [0]], [[0], [0]])
    ds = pi.load(tmp_path)
    assert list(ds["subject"].values) == ["s1", "s2"]
    np.testing.assert_array_equal(ds["trial_mask"].values, [[1, 1], [1, 0]])


@pytest.mark.parametrize(
    "co, ro, pattern",
    [
        ([[1, 2], [3, 1]], [[0, 0], [0, 0]], r"unknown code.*trial 2 of block 1"),
        ([[1, 2], [0, 1]], [[0, 0], [0, 0]], r"trial follows a 'no trial'.*trial 1 of block 2"),
        ([[1, 2], [2, 0]], [[0, 0], [0, 1]], r"reward on a 'no trial' entry"),
        ([[1, 2], [2, 1]], [[2, 0], [0, 0]], r"neither 0 nor the chosen code.*trial 1 of block 1"),
        ([[0, 0]], [[0, 0]], r"no trial"),
    ],
)
def test_bad_choice_order(tmp_path, co, ro, pattern):
    folder = _session(tmp_path / "s", co, ro)
    with pytest.raises(FileFormatError, match=pattern):
        pi.data.load_mat(folder / "choice_order.mat")


def test_choice_order_without_partner(tmp_path):
    (tmp_path / "s").mkdir()
    scipy.io.savemat(tmp_path / "s" / "choice_order.mat", {"choice_order": np.ones((2, 1))})
    with pytest.raises(FileFormatError, match=r"reward_order.mat' does not exist"):
        pi.data.load_mat(tmp_path / "s" / "choice_order.mat")


def test_v73_file_given_to_v5_reader(tmp_path):
    path = tmp_path / "new.mat"
    write_mat73(path, choice=[0, 1], reward=[1, 0])
    with pytest.raises(FileFormatError, match=r"v7.3 \(HDF5-based\) file.*scipy.io.loadmat"):
        read_mat(path, mat_version=5)
    with pytest.raises(FileFormatError, match="v7.3"):
        pi.data.load_mat(path, mat_version=5)
    assert pi.data.load_mat(path)["choice"].values.tolist() == [[0, 1]]


def test_truncated_and_garbage_mat_files(tmp_path):
    good = tmp_path / "good.mat"
    scipy.io.savemat(good, {"choice": np.arange(200) % 2, "reward": np.ones(200)})
    truncated = tmp_path / "trunc.mat"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(FileFormatError, match=r"trunc.mat' could not be read as a MATLAB v5 file"):
        pi.data.load_mat(truncated)
    h5 = tmp_path / "trunc73.mat"
    write_mat73(h5, choice=np.arange(100) % 2, reward=np.ones(100))
    h5.write_bytes(h5.read_bytes()[:1200])
    with pytest.raises(FileFormatError, match="trunc73.mat"):
        pi.data.load_mat(h5)
    empty = tmp_path / "empty.mat"
    empty.write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty"):
        pi.data.load_mat(empty)


def test_generic_layout_errors(tmp_path):
    path = tmp_path / "x.mat"
    scipy.io.savemat(path, {"a": np.arange(3), "b": np.ones(3)})
    with pytest.raises(FileFormatError, match=r"variables 'choice', 'reward' not found; the file holds \['a', 'b'\]"):
        pi.data.load_mat(path)
    scipy.io.savemat(path, {"choice": np.arange(3) % 2, "reward": np.ones(4)})
    with pytest.raises(pi.data.SchemaError, match="differ in length"):
        pi.data.load_mat(path)


def test_neural_or_misspelt_names_given_to_the_mat_loader_are_refused_by_name(tmp_path):
    """A MAT file of recordings mapped with input/activity got advice about choice and reward (the mapping was ignored);
    a misspelt name was ignored; `plasticinfer fit` of a MAT file now says MAT holds behaviour only."""
    import subprocess
    import sys

    rng = np.random.default_rng(5)
    path = tmp_path / "rec.mat"
    scipy.io.savemat(path, {"stim": rng.normal(size=(2, 50, 4)), "dff": rng.normal(size=(2, 50, 3)), "resp": [0, 1, 1]})
    with pytest.raises(SchemaError, match=r"\['activity', 'input'\] name neural-data variables; the MAT loader reads behaviour"):
        pi.data.load_mat(path, columns={"input": "stim", "activity": "dff"})
    with pytest.raises(SchemaError, match=r"unknown schema name\(s\) \['choise'\].*maps \['choice', 'reward'"):
        pi.data.load_mat(path, columns={"choise": "resp"})
    proc = subprocess.run([sys.executable, "-m", "plasticinfer.cli", "fit", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2 and "MAT files load as behaviour (choice, reward) only" in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_folder_of_files_with_several_sessions_warns_once(tmp_path):
    """Each file of a folder holds two sessions and no subject: read as one subject per file (its sessions in order),
    said once for the folder (it was said once per file: 20 files, 20 warnings); other warnings still pass."""
    rng = np.random.default_rng(0)
    for k in range(3):
        scipy.io.savemat(tmp_path / f"s{k}.mat", {"choice": rng.integers(0, 2, 20), "reward": rng.integers(0, 2, 20),
                                                  "session": np.repeat([1, 2], 10)})  # fmt: skip
    with pytest.warns(pi.PlasticInferWarning) as record:
        ds = pi.data.load_mat(tmp_path)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    assert "3 of 3 files have several sessions" in messages[0] and "s0.mat" in messages[0]
    assert list(ds["subject"].values) == ["s0", "s1", "s2"] and ds.sizes["trial"] == 20
    assert record[0].filename == __file__  # at the caller's line, not inside the loader
    # files read twice (only 1s: read again as their 1-based sibling is) are still said once, with the folder
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    scipy.io.savemat(mixed / "s0.mat", {"choice": rng.integers(1, 3, 20), "reward": rng.integers(0, 2, 20),
                                        "session": np.repeat([1, 2], 10)})  # fmt: skip
    for k in (1, 2):
        scipy.io.savemat(mixed / f"s{k}.mat", {"choice": np.ones(20, int), "reward": rng.integers(0, 2, 20),
                                               "session": np.repeat([1, 2], 10)})  # fmt: skip
    with pytest.warns(pi.PlasticInferWarning) as record:
        ds = pi.data.load_mat(mixed)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and "3 of 3 files have several sessions" in messages[0], messages
    assert ds.attrs["choice_coding"] == "1-based"
