"""The classical agents, the GRU ceiling and population models through `plasticinfer compare` and `plasticinfer fly`.

The command line adds the same rows the Python API builds: a row's held-out scores from the CLI equal
those of ``compare`` called directly with the same model, split and key.
"""

import jax
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import plasticinfer as pi
from plasticinfer.compare import (
    ComparisonError,
    ModelHypothesis,
    PopulationModel,
    SubjectKFold,
    agent_model,
    as_populations,
    classical_agents,
    classical_rules,
    compare,
    softmax_policy,
)

AGENT = "DF + LT + OS · softmax"


@pytest.fixture(scope="module")
def syn():
    return pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.3, "w": -0.1}), key=jax.random.key(7), n_subjects=4, inverse_temperature=1.0)


@pytest.fixture(scope="module")
def flies(syn, tmp_path_factory):
    """The synthetic animals as a behaviour data file (docs/data-format.md)."""
    n = syn.data.n_trajectories
    ds = pi.behaviour_dataset(
        [np.asarray(syn.data.observations[i]) for i in range(n)],
        [np.asarray(syn.data.inputs["reward"][i]) for i in range(n)],
        block=[np.asarray(syn.block[i]) for i in range(n)],
        subjects=[f"fly_{i}" for i in range(n)],
    )
    path = tmp_path_factory.mktemp("flies") / "flies.nc"
    pi.save_netcdf(ds, path)
    return ds, path


def test_agent_names_are_forgiving_about_case_and_spacing_and_refuse_unknown_ones(syn):
    got = classical_agents(syn.data, policies=("softmax",), rules=["df+lt+os", "Q (RW)"])
    assert list(got) == [AGENT, "Q (RW) · softmax"]
    assert len(classical_agents(syn.data, policies=("softmax",), rules=["all"])) == len(classical_rules())
    with pytest.raises(ComparisonError, match=r"unknown classical agent 'DF\+'"):
        classical_agents(syn.data, rules=["DF+"])


def test_as_populations_wraps_every_model_and_refuses_what_is_not_one(syn):
    model = agent_model(classical_rules()["DF + LT + OS"], softmax_policy(), syn.data)
    got = as_populations({"agent": model, "x*r + w": "x*r + w"}, syn.data, n_draws=8)
    assert list(got) == ["agent (population)", "x*r + w (population)"]
    for h in got.values():
        assert isinstance(h, ModelHypothesis) and isinstance(h.model, PopulationModel) and h.model.n_draws == 8
    assert got["agent (population)"].model.rule is model.rule  # the population mean starts at the model it wraps
    with pytest.raises(ComparisonError, match="not a model"):
        as_populations({"gru": pi.compare.GRUHypothesis(hidden=2)}, syn.data)


def test_population_models_refuse_splits_that_do_not_hold_out_subjects(syn):
    pop = as_populations({"x*r + w": "x*r + w"}, syn.data, n_draws=4)
    with pytest.raises(ComparisonError, match="population model"):
        compare(pop, syn.data, split=pi.compare.HeldOutTrials(0.25), per_subject=False, baselines=False, steps=5, restarts=1,
                key=jax.random.key(0), progress=False)


@pytest.mark.slow
def test_cli_compare_adds_agents_populations_and_a_gru_with_the_api_s_scores(tmp_path, flies):
    from plasticinfer.cli import app

    ds, path = flies
    n = ds.sizes["subject"]
    args = ["compare", str(path), "-H", "x*r + w", "--agent", "df + lt + os", "--policy", "softmax", "--population", "4",
            "--gru", "1", "--gru-steps", "50", "--split", "kfold", "--folds", "2", "--steps", "25", "--restarts", "1",
            "--no-baselines", "--out", str(tmp_path / "c"), "--quiet"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    per = pd.read_csv(tmp_path / "c" / "per_subject.csv")
    assert set(per["hypothesis"]) == {"x*r + w", AGENT, "x*r + w (population)", f"{AGENT} (population)", "GRU (1 units)"}
    assert (per.groupby("hypothesis").size() == n).all()  # every subject scored once, as an unseen subject

    # the same row through the Python API: same model, split and key → the same held-out scores
    td = pi.TrialData.from_dataset(ds)
    agent = agent_model(classical_rules()["DF + LT + OS"], softmax_policy(), td)
    ref = compare({AGENT: agent}, td, split=SubjectKFold(2, seed=0), per_subject=False, baselines=False, steps=25,
                  restarts=1, key=jax.random.fold_in(jax.random.key(0), 1), progress=False).per_subject()
    cli = per[per["hypothesis"] == AGENT].sort_values("subject")["heldout_ll"].to_numpy()
    np.testing.assert_allclose(cli, ref.sort_values("subject")["heldout_ll"].to_numpy(), rtol=1e-6)
    # the population version counts its spreads: more parameters than the shared agent
    k = per.groupby("hypothesis")["n_params"].first()
    assert k[f"{AGENT} (population)"] > k[AGENT]


@pytest.mark.slow
def test_cli_fly_adds_agent_rows_to_the_heldout_comparison(tmp_path, flies):
    from plasticinfer.cli import app

    _, path = flies
    out = CliRunner().invoke(app, ["fly", str(path), "-H", "x*r + w", "--agent", "Q (RW)", "--split", "kfold", "--folds", "2",
                                   "--population", "4", "--steps", "25", "--restarts", "1", "--no-in-sample",
                                   "--out", str(tmp_path / "f"), "--quiet"])
    assert out.exit_code == 0, out.output
    per = pd.read_csv(tmp_path / "f" / "per_subject.csv")
    rows = set(per["hypothesis"])
    assert {"x·r + w", "Q (RW) · softmax", "Q (RW) · accept-reject", "x·r + w (population)", "Q (RW) · softmax (population)"} <= rows
    assert "Q (RW) · softmax" in (tmp_path / "f" / "report.md").read_text()
