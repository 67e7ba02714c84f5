"""Tutorial 02 (loading data) runs end to end as a plain script and writes its figure outside the repo."""

import pytest

from helpers import REPO, run_tutorial


@pytest.mark.slow
def test_tutorial_02_runs(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("PLASTICINFER_DATA_DIR", str(shared_data))
    out = run_tutorial("02_loading_data.py", tmp_path, small=False, cwd=REPO, timeout=300)
    assert "18 flies" in out
    assert (tmp_path / "choices_rewards_per_block.png").stat().st_size > 10_000
    assert (tmp_path / "my_mice.nc").is_file() and (tmp_path / "my_mice.csv").is_file()
    assert not list(REPO.glob("tutorials/*.png")) and not list(REPO.glob("*.png"))


def test_tutorial_02_is_a_jupytext_notebook():
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(REPO / "tutorials" / "02_loading_data.py")
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("markdown") >= 4 and kinds.count("code") >= 6
