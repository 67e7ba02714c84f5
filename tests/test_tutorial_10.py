"""Tutorial 10 (rule families in an E/I spiking network) runs end to end at its small size."""

import pytest

from helpers import REPO, run_tutorial


@pytest.mark.slow
@pytest.mark.compile_bound  # measured: faster compiled unoptimised (tests/conftest.py)
def test_tutorial_10_runs_small(tmp_path):
    out = run_tutorial("10_rule_families.py", tmp_path, timeout=1200)
    assert "static network: E" in out and "meet every constraint" in out and "Verdict" in out
    for name in ("summary.md", "families.nc"):
        assert (tmp_path / name).stat().st_size > 0


def test_tutorial_10_is_a_jupytext_notebook():
    jupytext = pytest.importorskip("jupytext")
    kinds = [c.cell_type for c in jupytext.read(REPO / "tutorials" / "10_rule_families.py").cells]
    assert kinds.count("markdown") >= 4 and kinds.count("code") >= 4
