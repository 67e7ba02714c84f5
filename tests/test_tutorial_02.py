"""Tutorial 02 (loading data) runs end to end as a plain script and writes its figure outside the repo."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tutorial_02_runs(tmp_path, shared_data):
    env = dict(os.environ, PLASTICINFER_TUTORIAL_OUT=str(tmp_path), PLASTICINFER_DATA_DIR=str(shared_data),
               MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "tutorials/02_loading_data.py"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "18 flies" in proc.stdout
    assert (tmp_path / "choices_rewards_per_block.png").stat().st_size > 10_000
    assert (tmp_path / "my_mice.nc").is_file() and (tmp_path / "my_mice.csv").is_file()
    assert not list(REPO.glob("tutorials/*.png")) and not list(REPO.glob("*.png"))


def test_tutorial_02_is_a_jupytext_notebook():
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(REPO / "tutorials" / "02_loading_data.py")
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("markdown") >= 4 and kinds.count("code") >= 6
