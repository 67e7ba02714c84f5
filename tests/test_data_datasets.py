"""Named datasets on the real files in ../shared/data, their descriptions, checksums, download, CLI."""

import hashlib
import io
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import plasticinfer as pi
from plasticinfer.data import DatasetError
from plasticinfer.cli import app
from plasticinfer.data import _datasets

REPO = Path(__file__).resolve().parents[1]
RAJ = "rajagopalan2023_fly_operant_matching"


@pytest.fixture(scope="module")
def fly18(shared_data):
    return pi.datasets.load("rajagopalan2023", path=shared_data)


@pytest.fixture(scope="module")
def fly21(shared_data):
    return pi.datasets.load("rajagopalan2023", path=shared_data, include_incomplete=True)


def test_rajagopalan_18_complete_sessions_in_log_order(fly18, shared_data):
    log = pd.read_csv(shared_data / RAJ / "log.csv")
    assert fly18.sizes["subject"] == 18 and fly18.sizes["trial"] == 240
    assert list(fly18["subject"].values) == list(log["Session Name"])
    np.testing.assert_array_equal(fly18["fly_id"].values, np.arange(18))
    for b in (1, 2, 3):  # block probabilities of option 1 (odour code 2) = log p1..p3
        first = np.argmax(fly18["block"].values == b, axis=1)
        np.testing.assert_allclose(fly18["p_reward"].values[np.arange(18), first, 1], log[f"p{b}"])


def test_rajagopalan_21_sessions_match_trials_csv(fly21, shared_data):
    trials = pd.read_csv(shared_data / RAJ / "trials.csv")
    assert fly21.sizes["subject"] == 21
    counts = trials.groupby("session").size()
    per_subject = dict(zip(fly21["subject"].values, fly21["trial_mask"].values.sum(axis=1)))
    assert per_subject == counts.to_dict()
    assert sorted(set(counts))[:3] == [142, 171, 185]
    for sid in fly21["subject"].values:
        rows = trials[trials.session == sid].sort_values("trial")
        sub = fly21.sel(subject=sid)
        m = sub["trial_mask"].values
        np.testing.assert_array_equal(sub["choice"].values[m], rows["choice"] - 1)
        np.testing.assert_array_equal(sub["reward"].values[m], rows["rewarded"])
        np.testing.assert_array_equal(sub["block"].values[m], rows["block"])
        np.testing.assert_allclose(sub["p_reward"].values[m, 1], rows["p_block"])
        assert (sub["choice"].values[~m] == -1).all() and (sub["reward"].values[~m] == 0).all()


def test_rajagopalan_other_option_probability_and_provenance(fly21):
    p = fly21["p_reward"].values[fly21["trial_mask"].values]
    total = p.sum(axis=-1)
    assert np.isin(np.round(total, 6), [0.5, 1.0]).all()
    tp = fly21["group"].values == "Baited_Reward_V2_3Cont_Tp_0.5"
    assert tp.sum() == 8
    np.testing.assert_allclose(fly21["p_reward"].values[tp][fly21["trial_mask"].values[tp]].sum(-1), 0.5)
    attrs = fly21.attrs
    assert attrs["license"] == "BSD-3-Clause" and "Howard Hughes Medical Institute" in attrs["license_text"]
    assert "10.1073/pnas.2221415120" in attrs["citation"]
    assert "bafcc943bd636770380924c066330bf225e40817" in attrs["source"]
    assert "total - p" in attrs["p_reward_note"]


def test_mohanta_132_flies(shared_data):
    ds = pi.datasets.load("mohanta2022", path=shared_data)
    assert dict(ds.sizes)["subject"] == 132 and ds.sizes["trial"] == 160
    assert ds["trial_mask"].values.all() and "p_reward" not in ds.coords
    assert (ds["split"].values == "training").sum() == 88
    raw = np.loadtxt(shared_data / "mohanta2022_fly_ymaze" / "test_choice_set.csv", delimiter=",")
    np.testing.assert_array_equal(ds["choice"].values[88:], raw)
    test = pi.datasets.load("mohanta2022", path=shared_data, subset="test")
    assert test.sizes["subject"] == 44 and test["schedule"].values[0] == "exp0"


def test_descriptions_ship_with_the_package_and_match_repo_copies():
    for name in pi.datasets.names():
        repo_copy = REPO / "datasets" / f"{name}.toml"
        package_copy = REPO / "plasticinfer" / "datasets" / f"{name}.toml"
        assert repo_copy.read_bytes() == package_copy.read_bytes(), f"run datasets/build_checksums.py ({name})"
        meta = pi.datasets.info(name)
        assert meta.license == "BSD-3-Clause" and meta.citation and meta.provenance
        assert all(len(f.sha256) == 64 for f in meta.files)
        assert all(meta.url(f).startswith(meta.base_url) for f in meta.files if f.source_path)
        assert meta.source_commit == "bafcc943bd636770380924c066330bf225e40817"


def test_checksums_match_the_shared_files(shared_data):
    for name in pi.datasets.names():
        meta = pi.datasets.info(name)
        folder = shared_data / meta.folder
        for f in meta.files:
            assert hashlib.sha256((folder / f.path).read_bytes()).hexdigest() == f.sha256, f.path


def test_modified_file_fails_checksum(tmp_path, shared_data):
    copy = tmp_path / RAJ
    shutil.copytree(shared_data / RAJ, copy)
    with open(copy / "log.csv", "a") as fh:
        fh.write("\n")
    with pytest.raises(DatasetError, match=r"log.csv' has SHA-256 .* expected ea8289e2"):
        pi.datasets.load("rajagopalan2023", path=tmp_path)
    assert pi.datasets.load("rajagopalan2023", path=tmp_path, verify=False).sizes["subject"] == 18
    (copy / "log.csv").unlink()
    with pytest.raises(DatasetError, match="not found; looked in"):
        pi.datasets.load("rajagopalan2023", path=tmp_path)


def test_locate_order_and_message(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("PLASTICINFER_DATA_DIR", str(shared_data))
    assert pi.datasets.locate("mohanta2022") == shared_data / "mohanta2022_fly_ymaze"
    assert pi.datasets.locate("mohanta2022", path=shared_data / "mohanta2022_fly_ymaze").name == "mohanta2022_fly_ymaze"
    with pytest.raises(DatasetError) as e:
        pi.datasets.locate("mohanta2022", path=tmp_path)
    assert str(tmp_path) in str(e.value) and "download=True" in str(e.value) and "PLASTICINFER_DATA_DIR" in str(e.value)
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        pi.datasets.load("nope")


def _fake_urlopen(shared_data, corrupt=None):
    """Serve the shared files for the dataset URLs (no network in tests)."""

    def urlopen(url, timeout=60.0):
        for name in pi.datasets.names():
            meta = pi.datasets.info(name)
            for f in meta.files:
                if f.source_path and meta.url(f) == url:
                    data = (shared_data / meta.folder / f.path).read_bytes()
                    return io.BytesIO(data + b"x" if f.path == corrupt else data)
        raise OSError(f"unexpected URL {url}")

    return urlopen


def test_download_verifies_and_writes_atomically(tmp_path, monkeypatch, shared_data):
    monkeypatch.setattr(_datasets, "_urlopen", _fake_urlopen(shared_data, corrupt="test_reward_set.csv"))
    with pytest.raises(DatasetError, match=r"test_reward_set.csv has SHA-256 .*nothing was written"):
        pi.datasets.download("mohanta2022", tmp_path)
    assert list(tmp_path.iterdir()) == []  # no partial folder, no staging left
    monkeypatch.setattr(_datasets, "_urlopen", _fake_urlopen(shared_data))
    ds = pi.datasets.load("mohanta2022", path=tmp_path, download=True)
    assert ds.sizes["subject"] == 132
    assert "Howard Hughes" in (tmp_path / "mohanta2022_fly_ymaze" / "LICENSE").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mohanta2022_fly_ymaze"]


def test_download_of_fly_data_gives_18_flies(tmp_path, monkeypatch, shared_data):
    monkeypatch.setattr(_datasets, "_urlopen", _fake_urlopen(shared_data))
    folder = pi.datasets.download("rajagopalan2023", tmp_path)
    assert not (folder / "trials.csv").exists()  # not part of the public source
    ds = pi.datasets.load("rajagopalan2023", path=tmp_path)
    assert ds.sizes["subject"] == 18 and not np.isnan(ds["p_reward"].values[ds["trial_mask"].values]).any()
    ds21 = pi.datasets.load("rajagopalan2023", path=tmp_path, include_incomplete=True)
    short = ds21["fly_id"].values == -1
    assert np.isnan(ds21["p_reward"].values[short][ds21["trial_mask"].values[short]]).all()


# --- CLI -------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_datasets_list_and_info(monkeypatch, shared_data):
    monkeypatch.setenv("PLASTICINFER_DATA_DIR", str(shared_data))
    result = runner.invoke(app, ["datasets", "list"])
    assert result.exit_code == 0, result.output
    assert "rajagopalan2023" in result.output and "mohanta2022" in result.output
    assert str(shared_data / RAJ) in result.output
    result = runner.invoke(app, ["datasets", "info", "rajagopalan2023"])
    assert result.exit_code == 0, result.output
    for text in ("BSD-3-Clause", "10.1073/pnas.2221415120", "bafcc943bd6", "subjects: 18 (all: 21)", "Rajagopalan"):
        assert text in result.output


def test_cli_inspect_csv_and_mapping(tmp_path):
    path = tmp_path / "mine.csv"
    pd.DataFrame({"subj": ["a", "a", "b"], "resp": [1, 2, 2], "reward": [1, 0, 1]}).to_csv(path, index=False)
    result = runner.invoke(app, ["inspect", str(path), "--map", "subject=subj", "--map", "choice=resp"])
    assert result.exit_code == 0, result.output
    for text in ("kind: behaviour", "subjects: 2 (a, b)", "min 1, median 1, max 2", "1 padded", "validator: OK"):
        assert text in result.output


def test_cli_inspect_invalid_netcdf_reports_validator(tmp_path):
    ds = pi.behaviour_dataset([[0, 1], [1]], [[1.0, 0.0], [0.0]])
    bad = ds.assign(reward=ds["reward"].where(ds.trial_mask, 7.0))
    path = tmp_path / "bad.nc"
    bad.to_netcdf(path, engine="h5netcdf")
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code != 0
    assert "subjects: 2" in result.output  # described before the verdict
    assert isinstance(result.exception, pi.data.SchemaError) and "validator: INVALID" in str(result.exception)


def test_cli_main_turns_errors_into_exit_code_2(tmp_path):
    import subprocess
    import sys

    missing = tmp_path / "missing.csv"
    proc = subprocess.run([sys.executable, "-m", "plasticinfer.cli", "inspect", str(missing)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "missing.csv" in proc.stderr and "does not exist" in proc.stderr


def test_toml_files_parse():
    for path in (REPO / "datasets").glob("*.toml"):
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        assert raw["name"] == path.stem
