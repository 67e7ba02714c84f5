"""Every tutorial runs end to end at its small size (PLASTICINFER_TUTORIAL_SMALL=1)."""

import re

import pytest

from helpers import run_tutorial


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01_simulate_and_fit.py", "04_fly_reward_learning.py"])
def test_tutorial_runs(name, tmp_path, request, monkeypatch):
    if name == "04_fly_reward_learning.py":  # reads the real fly data: skipped on a clone without it
        monkeypatch.setenv("PLASTICINFER_DATA_DIR", str(request.getfixturevalue("shared_data")))
    # a hang guard, not a speed test: the fly tutorial takes ~3 min in the suite beside the other test worker
    # (it starts first, so that it is not the run's tail)
    out = run_tutorial(name, tmp_path, timeout=1800)
    if name == "01_simulate_and_fit.py":  # the closed-loop bandit learns to prefer the richer option
        m = re.search(r"bandit: P\(choice = 1\) ([\d.]+) on the first trial, ([\d.]+) after 200", out)
        assert m and float(m.group(1)) == 0.5 and float(m.group(2)) > 0.7, out[-500:]
    expected = {"01_simulate_and_fit.py": ["fit.nc", "loss.png"], "04_fly_reward_learning.py": ["report.md", "traces.png", "posterior.png", "posterior.nc"]}
    for f in expected[name]:
        assert (tmp_path / f).exists(), f
