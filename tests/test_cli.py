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


def test_files_an_earlier_run_left_in_the_folder_are_named_not_taken_for_this_runs(tmp_path):
    """A second command into the same --out left the first one's files beside its own, silently: a reader of the
    folder took the demo's results.nc for the fit's, or a stale plot for the new one. Each command now lists what it
    wrote and names the rest (nothing is deleted)."""
    out = tmp_path / "o"
    first = runner.invoke(app, ["demo", "--steps", "2", "--out", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    assert "also in" not in first.output  # a new folder: nothing else there
    data = tmp_path / "sim.nc"
    assert runner.invoke(app, ["simulate", str(data), "--trajectories", "2", "--trials", "20", "--no-plot"]).exit_code == 0
    second = runner.invoke(app, ["fit", str(data), "--out", str(out), "--steps", "2", "--restarts", "1", "--quiet"])
    assert second.exit_code == 0, second.output
    line = next(s for s in second.output.splitlines() if s.startswith("also in"))
    assert line.endswith(": coefficients.csv, recovery.png")  # the demo's own files; results.nc and summary.md rewritten
    assert {"results.nc", "coefficients.csv", "recovery.png"} <= {p.name for p in out.iterdir()}  # nothing deleted
    for name in ("results.nc", "summary.md", "coefficients.png"):
        assert f"{out / name}" in second.output


def test_the_list_of_other_files_survives_a_symlink_loop_and_skips_a_commands_manifest(tmp_path, capsys):
    """Names only what an earlier run left: not the run's own files, its manifest or its checkpoint; a symlink loop
    in the folder (resolve() raises RuntimeError) does not crash a run whose results are already written."""
    from plasticinfer._cli_common import echo_written

    (tmp_path / "results.nc").write_text("x")
    (tmp_path / "report_files.json").write_text("[]")
    (tmp_path / "old.png").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.csv").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    echo_written(tmp_path, {"results": tmp_path / "results.nc", "nested": tmp_path / "sub" / "a.csv"}, own=("report_files.json",))
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].endswith("not written by this run (not its results): loop, old.png")
    for i in range(10):
        (tmp_path / f"f{i}.txt").write_text("x")
    echo_written(tmp_path, {"results": tmp_path / "results.nc"})
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(": f0.txt, f1.txt, f2.txt, f3.txt, f4.txt, f5.txt, f6.txt, f7.txt and 6 more")
