"""Tutorial 06 (feedback alignment) runs end to end at its small size and writes outside the repository."""

import pytest

from helpers import REPO, run_tutorial

TUTORIAL = REPO / "tutorials" / "06_feedback_alignment.py"


@pytest.mark.slow
@pytest.mark.compile_bound  # measured: faster compiled unoptimised (tests/conftest.py)
def test_tutorial_06_runs_small(tmp_path):
    out = run_tutorial("06_feedback_alignment.py", tmp_path, timeout=300)
    # the backprop oracle printed by the tutorial is at rounding level in every layer
    lines = [l for l in out.splitlines() if l.startswith("layer ") and "pseudo-gradient" in l]
    assert len(lines) == 3 and all(float(l.rsplit("=", 1)[1]) < 1e-5 for l in lines)
    assert "surviving terms" in out and "meta-learned − feedback alignment" in out and "all surviving terms" in out
    for name in ("results.nc", "summary.md", "learning_curves.png", "episode.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert not list(REPO.glob("*.png")) and not list((REPO / "tutorials").glob("*.png"))


def test_tutorial_06_is_a_jupytext_notebook():
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(TUTORIAL)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("markdown") >= 5 and kinds.count("code") >= 6
