"""Tutorial 05 (rule discovery) runs end to end at its small size and writes outside the repository."""

import pytest

from helpers import REPO, run_tutorial

TUTORIAL = REPO / "tutorials" / "05_rule_discovery.py"


@pytest.mark.slow
@pytest.mark.compile_bound  # measured: faster compiled unoptimised (tests/conftest.py)
def test_tutorial_05_runs_small(tmp_path):
    out = run_tutorial("05_rule_discovery.py", tmp_path, timeout=300)
    losses = {l.split("loss =")[0].strip(): float(l.split("loss =")[1]) for l in out.splitlines() if "loss =" in l and l[:1].isalpha()}
    assert losses["Oja"] < 0.01 < losses["anti-Oja"]  # the oracle printed by the tutorial
    assert "θ(y²w)/θ(x·y)" in out and "Analytic manifold" in out and "simulated" in out
    assert "reloaded: gradient 2 restarts" in out and out.split("reloaded:")[1].splitlines()[0].endswith("→ True")
    for name in ("b3_gradient.nc", "b3_cma.nc", "summary.md", "manifold.png", "pc1_search.nc"):
        assert (tmp_path / name).stat().st_size > 0
    assert not list(REPO.glob("*.png")) and not list((REPO / "tutorials").glob("*.png"))


def test_tutorial_05_is_a_jupytext_notebook():
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(TUTORIAL)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("markdown") >= 6 and kinds.count("code") >= 8
