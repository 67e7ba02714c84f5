"""`plasticinfer discover families` at a tiny size, through the package's own command line."""

import pytest
import xarray as xr
from typer.testing import CliRunner

from helpers import as_loaded
from plasticinfer.cli import app


def _app():
    return app


@pytest.mark.slow
@pytest.mark.compile_bound  # measured: faster compiled unoptimised (tests/conftest.py)
def test_cli_families_tiny(tmp_path):
    args = ["discover", "families", "--n-exc", "16", "--n-inh", "4", "--p", "0.5", "--duration", "0.2", "--transient", "0.05", "--segment", "0.05",
            "--simulations", "24", "--predictive", "8", "--memory", "2", "--patterns", "4", "--delay", "0.05", "--batch", "8", "--out", str(tmp_path)]  # fmt: skip
    r = CliRunner().invoke(_app(), args)
    assert r.exit_code == 0, r.output
    ds = xr.load_dataset(tmp_path / "families.nc", engine="h5netcdf")
    assert ds.sizes["parameter"] == 24 and ds.sizes["simulation"] == 24
    md = (tmp_path / "summary.md").read_text()
    assert "meet every constraint" in md and "Verdict" in md
    from plasticinfer.discovery import FamiliesResult

    # the whole study reads back from its file, all but the speeds (files hold no wall times)
    assert FamiliesResult.load(tmp_path / "families.nc").markdown() == as_loaded(md)


def test_cli_families_rejects_unknown_type(tmp_path):
    r = CliRunner().invoke(_app(), ["discover", "families", "--plastic", "ee,xx", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--plastic" in r.output
