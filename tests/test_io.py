"""One atomic writer, one netCDF reader/writer: permissions, atomicity, determinism, clear errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr

import plasticinfer as pi
from plasticinfer import _io


def _ds():
    return xr.Dataset({"a": ("x", np.arange(3.0)), "s": ("x", np.array(["a", "bb", "c"], dtype=object))}, attrs={"k": "v"})


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = _io.write_netcdf(_ds(), tmp_path / "a.nc")
        text = _io.write_text("hi", tmp_path / "a.txt")
    finally:
        os.umask(old)
    for p in (path, text):
        assert oct(os.stat(p).st_mode & 0o777) == oct(0o666 & ~umask)
        # the same as a file created plainly under that umask
    old = os.umask(umask)
    try:
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "plain").st_mode & 0o777 == os.stat(path).st_mode & 0o777


def test_same_dataset_gives_identical_bytes(tmp_path):
    a = _io.write_netcdf(_ds(), tmp_path / "a.nc")
    b = _io.write_netcdf(_ds(), tmp_path / "b.nc")
    assert a.read_bytes() == b.read_bytes()


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _io.atomic_write(target, boom)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_write_errors_name_the_file(tmp_path):
    with pytest.raises(pi.data.FileFormatError, match="nowhere.*does not exist"):
        _io.write_netcdf(_ds(), tmp_path / "nowhere" / "a.nc")
    bad = _ds().assign_attrs(flag=True)
    with pytest.raises(pi.data.SchemaError, match="'flag'"):
        _io.write_netcdf(bad, tmp_path / "a.nc")
    assert not (tmp_path / "a.nc").exists()


def test_read_round_trip_and_errors(tmp_path):
    path = _io.write_netcdf(_ds(), tmp_path / "a.nc")
    back = _io.read_netcdf(path)
    assert back["s"].values.tolist() == ["a", "bb", "c"] and back.attrs["k"] == "v"
    np.testing.assert_array_equal(back["a"].values, np.arange(3.0))
    with pytest.raises(pi.data.FileFormatError, match="missing.nc"):
        _io.read_netcdf(tmp_path / "missing.nc")
    (tmp_path / "junk.nc").write_bytes(b"junk")
    with pytest.raises(pi.data.FileFormatError, match="junk.nc"):
        _io.read_netcdf(tmp_path / "junk.nc")


def test_one_implementation():
    """The data layer and the results code use the same reader and writer (no second copy)."""
    from plasticinfer import _results_io
    from plasticinfer.data import _netcdf

    assert _netcdf.read_netcdf is _io.read_netcdf and _results_io.read_netcdf is _io.read_netcdf
    assert not hasattr(_netcdf, "atomic_write")


def test_an_earlier_runs_list_cannot_delete_files_outside_the_output_folder(tmp_path):
    """remove_earlier_outputs deletes what the earlier run listed and this one did not write, inside the folder only:
    an absolute path or a '..' in an edited manifest is skipped."""
    import json

    from plasticinfer._io import remove_earlier_outputs

    out, outside = tmp_path / "out", tmp_path / "precious.txt"
    out.mkdir()
    outside.write_text("keep")
    (out / "old.png").write_text("stale")
    (out / "new.md").write_text("fresh")
    (out / "list.json").write_text(json.dumps([str(outside), "../precious.txt", "old.png", "new.md"]))
    remove_earlier_outputs(out, [out / "new.md"], "list.json")
    assert outside.read_text() == "keep" and not (out / "old.png").exists() and (out / "new.md").exists()
    assert json.loads((out / "list.json").read_text()) == ["new.md"]
