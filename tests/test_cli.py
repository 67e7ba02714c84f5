import subprocess
import sys

import pytest
import xarray as xr
from typer.testing import CliRunner

from plasticinfer.cli import app

runner = CliRunner()


def test_help_lists_commands():
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0
    for cmd in ("demo", "simulate", "fit"):
        assert cmd in out.output


@pytest.mark.slow
def test_simulate_then_fit(tmp_path):
    data = tmp_path / "sim.nc"
    out = runner.invoke(app, ["simulate", str(data), "--seed", "1"])  # Oja, 20 → 5, 8 × 300 trials
    assert out.exit_code == 0, out.output
    ds = xr.load_dataset(data)
    assert ds.attrs["kind"] == "neural" and ds["activity"].shape == (8, 300, 5)
    assert int(ds["recorded"].sum()) == 8 * 2  # round(0.5 · 5) = 2 neurons recorded per trajectory
    out = runner.invoke(app, ["inspect", str(data)])
    assert out.exit_code == 0 and "OK" in out.output
    res = tmp_path / "fit"
    out = runner.invoke(app, ["fit", str(data), "--out", str(res), "--quiet"])
    assert out.exit_code == 0, out.output
    fitted = xr.load_dataset(res / "results.nc")
    assert len(fitted["term"]) == 27
    assert float(fitted["coefficient"].sel(term="x*y")) == pytest.approx(1.0, rel=0.1)
    assert float(fitted["coefficient"].sel(term="y^2*w")) == pytest.approx(-1.0, rel=0.1)
    assert (res / "summary.md").exists()


def test_errors_are_one_line_and_nonzero(tmp_path):
    missing = tmp_path / "nope.nc"
    proc = subprocess.run([sys.executable, "-m", "plasticinfer.cli", "fit", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope.nc" in proc.stderr and "Traceback" not in proc.stderr
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"\x00garbage")
    proc = subprocess.run([sys.executable, "-m", "plasticinfer.cli", "fit", str(junk)], capture_output=True, text=True)
    assert proc.returncode == 2 and "junk.nc" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "plasticinfer.cli", "simulate", str(tmp_path / "x.nc"), "--rule", "x*q"], capture_output=True, text=True)
    assert proc.returncode == 2 and "x*q" in proc.stderr
