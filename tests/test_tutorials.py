"""Every tutorial runs end to end at its small size (PLASTICINFER_TUTORIAL_SMALL=1)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01_simulate_and_fit.py", "04_fly_reward_learning.py"])
def test_tutorial_runs(name, tmp_path):
    env = dict(os.environ, PLASTICINFER_TUTORIAL_SMALL="1", PLASTICINFER_TUTORIAL_OUT=str(tmp_path), MPLBACKEND="Agg")
    repo = TUTORIALS.parent
    env.setdefault("PLASTICINFER_DATA_DIR", str(repo.parent / "shared" / "data"))
    proc = subprocess.run([sys.executable, str(TUTORIALS / name)], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = {"01_simulate_and_fit.py": ["fit.nc", "loss.png"], "04_fly_reward_learning.py": ["report.md", "traces.png", "posterior.png", "posterior.nc"]}
    for f in expected[name]:
        assert (tmp_path / f).exists(), f
