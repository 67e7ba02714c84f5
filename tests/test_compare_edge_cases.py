"""Rule comparison and the fly report used as a stranger would: each case once gave a number or a sentence that
was not what it claimed (an uncalibrated "calibration", one fold's rule as "the shared fit", a reward-learning
finding without its control, stale files from an earlier run) or refused valid data; now it is right or says so."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import plasticinfer as pi
from plasticinfer.compare import ComparisonError, LeaveOneSubjectOut, SubjectKFold, compare
from plasticinfer.compare._agents import check_one_hot_cues
from plasticinfer.fly import analyse_choices, get_hypotheses, shuffle_rewards, write_report


def _flies(n=4, trials_per_block=20, seed=11, lengths=None):
    syn = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.6, "w": -0.1}), key=jax.random.key(seed), n_subjects=n,
                              trials_per_block=trials_per_block, inverse_temperature=1.0)
    ch, rw, bl = (np.asarray(a) for a in (syn.data.observations, syn.data.inputs["reward"], syn.block))
    lengths = lengths or [ch.shape[1]] * n
    return pi.behaviour_dataset([ch[i, : lengths[i]] for i in range(n)], [rw[i, : lengths[i]] for i in range(n)],
                                block=[bl[i, : lengths[i]] for i in range(n)], subjects=[f"fly{i}" for i in range(n)])


@pytest.mark.slow  # about 10 s: in the whole suite (--slow), out of the fast tier
def test_calibration_fits_a_held_out_choice_subjects_initial_weights():
    # choice models keep initial weights at 0, and the calibration part was silently dropped from scoring only
    ds = _flies(3)
    calibrated = compare(["x*r + w"], ds, split=LeaveOneSubjectOut(0.5), per_subject=False, steps=20, restarts=1,
                         progress=False, baselines=False)
    data = pi.TrialData.from_dataset(ds)
    for s in range(3):
        model = calibrated.fitted[("x*r + w", f"subject {s}")]  # the shared fit, naive start
        naive = eqx.tree_at(lambda m: m.initial_weights, model, {k: jnp.zeros((1,) + v.shape[1:]) for k, v in model.initial_weights.items()})
        one = jax.tree_util.tree_map(lambda a: a[np.array([s])], data)
        ll = np.asarray(naive.log_likelihood(one))[0]
        row = calibrated.scores.query(f"subject == {s}").iloc[0]
        assert row["n_test"] == ll.size - round(0.5 * ll.size)
        # uncalibrated, the two agreed to rounding (1e-12); calibrated initial weights move the score
        assert abs(row["test_ll"] - ll[round(0.5 * ll.size):].sum()) > 1e-6, "the held-out subject was scored uncalibrated"


def test_agents_accept_subjects_with_different_trial_counts():
    # padded trials carry zero cues, which the one-hot check read as data
    ds = _flies(3, lengths=[60, 45, 52])
    assert check_one_hot_cues(pi.TrialData.from_dataset(ds)) == 2


def test_equation_of_a_rule_fitted_in_several_folds_names_the_fold():
    ds = _flies(4, trials_per_block=10)
    r = compare(["x*r"], ds, split=SubjectKFold(2, seed=0), per_subject=False, steps=5, restarts=1, progress=False,
                baselines=False)
    folds = sorted({f for (_, f) in r.fitted})
    assert len(folds) == 2
    with pytest.raises(ComparisonError, match=r"fitted in 2 folds .*pass fold="):
        r.equation("x*r")
    assert r.equation("x*r", fold=folds[1]).startswith("Δw")
    assert "- data: " in r.to_markdown() and "- data: None" not in r.to_markdown()


def test_standard_hypotheses_are_found_in_any_term_order_and_settings_are_checked():
    assert list(get_hypotheses(["w + x*r"])) == ["x·r + w"]
    assert list(get_hypotheses(["w + x*(r-E[r])"])) == ["x·(r−E[r]) + w"]
    ds = _flies(2, trials_per_block=10)
    for kwargs, message in ((dict(restarts=0), "restarts must be ≥ 1"), (dict(restarts=-2), "restarts must be ≥ 1"),
                            (dict(steps=0), "steps must be ≥ 1"), (dict(l1=-1.0), "l1 must be a non-negative number")):
        with pytest.raises(ComparisonError, match=message):
            compare(["x*r"], ds, progress=False, **kwargs)


def test_shuffle_rewards_permutes_each_subjects_real_trials_only():
    ds = _flies(3, lengths=[60, 45, 52])
    null = shuffle_rewards(ds, seed=1)
    mask = ds["trial_mask"].values
    np.testing.assert_array_equal(null["choice"].values, ds["choice"].values)
    for i in range(3):
        real, shuffled = ds["reward"].values[i][mask[i]], null["reward"].values[i][mask[i]]
        np.testing.assert_array_equal(np.sort(shuffled), np.sort(real))
        assert not np.array_equal(shuffled, real)
        np.testing.assert_array_equal(null["reward"].values[i][~mask[i]], ds["reward"].values[i][~mask[i]])


@pytest.mark.slow
def test_fly_report_holds_its_claims_against_shuffled_rewards_and_leaves_nothing_stale(tmp_path):
    import dataclasses
    import json

    ds = _flies(4, trials_per_block=20)
    out = tmp_path / "report"
    a = analyse_choices(ds, ["x·r", "x·r + w"], key=jax.random.key(0), steps=15, restarts=1, in_sample=False, progress=False)
    assert a.control is not None and set(a.control.hypotheses) == {"x·r", "x·r + w"}
    paths = write_report(a, out)
    text = paths["report"].read_text()
    assert "## Control: rewards shuffled within each subject" in text
    assert "x·r + w vs x·r: median gain" in text and "with shuffled rewards" in text
    # the decay claim's verdict follows the two paired tests
    real = a.heldout.paired_test("x·r + w", "x·r", alternative="greater").median_difference
    null = a.control.paired_test("x·r + w", "x·r", alternative="greater").median_difference
    if real <= 0:
        assert "the decay term does not help held-out with the real rewards" in text
    elif null >= real:
        assert "not evidence about reward learning" in text
    else:
        assert "the decay term helps" in text and "with the real rewards" in text and "not evidence" not in text
    # "no rule beats the base rate" is said exactly when it is true
    t = a.heldout.table()
    best = max(a.heldout.hypotheses, key=lambda h: t.loc[h, "heldout_ll"])
    assert ("No rule hypothesis predicts the held-out choices better than the base rate" in text) == (
        t.loc[best, "heldout_ll"] <= t.loc["base rate", "heldout_ll"])
    # unconverged training fits are flagged in the report exactly when there are some (15 steps: usually there are)
    assert ("training fits had not converged" in text) == bool(len(a.heldout.unconverged_fits()))
    assert pi.compare.ComparisonResult.load(out / "control").hypotheses == a.control.hypotheses
    manifest = json.loads((out / "report_files.json").read_text())
    assert "control/scores.csv" in manifest
    assert {"comparison.csv", "table.csv"} <= set(manifest)  # the fly table once took the comparison table's key
    # a rerun without the control into the same folder: the earlier control/ (listed in the manifest) goes, the
    # user's own files (never listed, even with a report's file names) stay
    (out / "notes.txt").write_text("mine")
    (out / "posterior.nc").write_bytes(b"my NUTS run")
    write_report(dataclasses.replace(a, control=None), out)
    assert not (out / "control").exists()
    assert (out / "notes.txt").read_text() == "mine" and (out / "posterior.nc").read_bytes() == b"my NUTS run"
    assert "## Control" not in (out / "report.md").read_text()


def test_the_decay_verdict_never_says_a_term_helps_when_it_hurts():
    from types import SimpleNamespace

    from plasticinfer.fly._report import _control_lines

    def result(gain):
        table = pd.DataFrame({"heldout_ll": [-10.0, -12.0, -11.0], "subjects_better_than_base": [1, 0, 1], "n_subjects": [3, 3, 3]},
                             index=["x·r", "base rate", "x·r + w"])
        test = SimpleNamespace(median_difference=gain, n_better=1, n=3)
        return SimpleNamespace(table=lambda: table, hypotheses=["x·r", "x·r + w"], paired_test=lambda *a, **k: test)

    for real, null, verdict in ((-0.01, -0.02, "does not help held-out with the real rewards"),
                                (-0.02, 0.01, "does not help held-out with the real rewards"),
                                (0.01, 0.02, "not evidence about reward learning"),
                                (0.02, 0.01, "50% of its gain remains"),
                                (0.02, -0.01, "helps only with the real rewards")):
        analysis = SimpleNamespace(heldout=result(real), control=result(null))
        assert verdict in "\n".join(_control_lines(analysis, "x·r")), (real, null)


@pytest.mark.slow
def test_fly_report_under_folds_of_subjects_states_each_folds_rule(tmp_path):
    ds = _flies(4, trials_per_block=15)
    a = analyse_choices(ds, ["x·r + w"], key=jax.random.key(0), split=SubjectKFold(2, seed=0), steps=10, restarts=1,
                        in_sample=False, control=False, progress=False)
    text = write_report(a, tmp_path)["report"].read_text()
    assert text.count("- Best hypothesis, shared fit of fold") == 2
    assert "negative in" in text and "fold fits (one shared rule per fold)" in text
    assert "the training subjects' pooled smoothed choice rate" in text and "each subject's smoothed" not in text


@pytest.mark.slow  # about 10 s: in the whole suite (--slow), out of the fast tier
def test_rpe_coefficients_are_named_as_such_and_hypothesis_l1_is_checked():
    # the r − E[r] hypothesis's coefficient was labelled x*r, the same label as the plain-reward rule's
    ds = _flies(2)
    res = compare(["x*(r-E[r]) + w", "x*r"], ds, steps=5, restarts=1, progress=False, baselines=False)
    rpe = res.coefficient_table("x*(r-E[r]) + w")
    assert set(rpe.columns) == {"x*(r-E[r])", "w"}
    assert set(res.coefficient_table("x*r").columns) == {"x*r"}
    from plasticinfer.compare import RuleHypothesis
    from plasticinfer.compare._hypotheses import FitSettings, ModelHypothesis
    for bad in (-1.0, float("nan"), "0.1"):
        with pytest.raises(ComparisonError, match="l1 must be"):
            RuleHypothesis("h", pi.TaylorRule.from_terms({"x*r": 0.0}), l1=bad)
        with pytest.raises(ComparisonError, match="l1 must be"):
            FitSettings(l1=bad)
    model = RuleHypothesis("h", pi.TaylorRule.from_terms({"x*r": 0.0})).model(pi.TrialData.from_dataset(ds))
    with pytest.raises(ComparisonError, match="l1 must be"):
        ModelHypothesis("h", model, l1=-0.5)


def test_compare_and_fly_name_the_data_alike():
    from plasticinfer.compare._result import data_title
    assert data_title({"title": " Flies ", "source_file": "a.csv"}) == "Flies"
    assert data_title({"description": "two odours", "source_file": "a.csv"}) == "two odours"
    assert data_title({"source_file": "a.csv"}) == "a.csv"
    assert data_title({}, "a behaviour dataset") == "a behaviour dataset"


@pytest.mark.slow  # about 10 s: in the whole suite (--slow), out of the fast tier
def test_a_damaged_comparison_folder_is_refused_by_name(tmp_path):
    """A scores.csv that lost its last row loaded silently (and summary() then failed on unequal Series); a cut
    comparison.json or CSV gave a bare JSONDecodeError or pandas error; saving onto a file a bare FileExistsError."""
    import json
    import shutil

    from plasticinfer.errors import FileFormatError

    # l1 given as a JAX scalar: the settings are still written (comparison.json once failed on it, half a folder written)
    res = compare(["x*r"], _flies(3), steps=5, restarts=1, progress=False, l1=jnp.asarray(0.001))
    good = tmp_path / "good"
    res.save(good)
    back = pi.compare.ComparisonResult.load(good)
    pd.testing.assert_frame_equal(back.table(), res.table())

    def damaged(name, edit):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        edit(folder)
        return folder

    def drop_last_row(folder):
        lines = (folder / "scores.csv").read_text().splitlines(keepends=True)
        (folder / "scores.csv").write_text("".join(lines[:-1]))

    def drop_counts(folder):
        meta = json.loads((folder / "comparison.json").read_text())
        del meta["rows"]
        (folder / "comparison.json").write_text(json.dumps(meta))

    cases = {
        "short": (drop_last_row, r"scores\.csv: \d+ rows where the comparison saved \d+"),
        "old_short": (lambda f: (drop_counts(f), drop_last_row(f)), r"scores\.csv: in fold .* not scored on every held-out subject"),
        "cut_json": (lambda f: (f / "comparison.json").write_text((f / "comparison.json").read_text()[:40]),
                     r"cut_json: a damaged or incomplete comparison folder: JSONDecodeError"),
        "cut_line": (lambda f: (f / "scores.csv").write_text((f / "scores.csv").read_text()[:-30]),
                     r"cut_line.*(damaged or incomplete comparison folder|rows where the comparison saved)"),
    }

    def edit_json(change):
        def edit(folder):
            meta = json.loads((folder / "comparison.json").read_text())
            (folder / "comparison.json").write_text(json.dumps(change(meta)))

        return edit

    def edit_csv(name, change):
        def edit(folder):
            table = pd.read_csv(folder / name, keep_default_na=False)
            change(table)
            table.to_csv(folder / name, index=False)

        return edit

    # edited by hand or damaged: each gave a bare UnicodeDecodeError, TypeError, AttributeError or IndexError, or
    # loaded wrong (a term renamed into a second 'w', a converged column read as False)
    cases |= {
        "binary_json": (lambda f: (f / "comparison.json").write_bytes(b"\xff\xfe\x00junk"), r"binary_json: a damaged .*UnicodeDecodeError"),
        "list_json": (edit_json(lambda m: [m]), r"comparison\.json: \[.*\] missing or of the wrong type"),
        "unknown_setting": (edit_json(lambda m: m | {"settings": m["settings"] | {"stepz": 3}}), r"unknown settings \['stepz'\]"),
        "subject_beyond": (edit_csv("scores.csv", lambda t: t.__setitem__("subject_index", t["subject_index"] + 7)),
                           r"scores\.csv: subject_index \d+ where the comparison has 3 subjects"),
        "term_twice": (edit_csv("coefficients.csv", lambda t: t.__setitem__("term", "w")), r"coefficients\.csv: term 'w' of .* appears twice"),
        "maybe": (edit_csv("fits.csv", lambda t: t.__setitem__("converged", "maybe")), r"maybe/fits\.csv: a damaged .*'converged' holds 'maybe'"),
        "text_value": (edit_csv("coefficients.csv", lambda t: t.__setitem__("value", "abc")), r"text_value: a damaged .*does not convert"),
    }
    for name, (edit, message) in cases.items():
        with pytest.raises(FileFormatError, match=message):
            pi.compare.ComparisonResult.load(damaged(name, edit))
    pi.compare.ComparisonResult.load(damaged("old_intact", drop_counts))  # a folder saved before the counts: still read
    # a save that fails half-way leaves the folder's earlier comparison whole (it once mixed two comparisons' files)
    import plasticinfer.compare._result as result_module

    before = {p.name: p.read_bytes() for p in good.iterdir()}
    other = compare(["x*r + w"], _flies(3), steps=3, restarts=1, progress=False)
    write_text = result_module.write_text

    def failing(text, path):
        if path.name == "fits.csv":
            raise OSError("disk full")
        return write_text(text, path)

    result_module.write_text = failing
    try:
        with pytest.raises(OSError, match="disk full"):
            other.save(good)
    finally:
        result_module.write_text = write_text
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before  # nothing replaced, no temporary file left
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ComparisonError, match="a_file: exists and is not a folder"):
        res.save(tmp_path / "a_file")


@pytest.mark.slow  # about 10 s: in the whole suite (--slow), out of the fast tier
def test_a_hypothesis_that_does_not_apply_is_left_out_with_a_warning_and_the_folder_loads(tmp_path):
    """A GRU on activity data was skipped silently but kept in the hypothesis list: the table lacked it without a
    word, and the saved folder then read as 'cut short'."""
    from plasticinfer.compare import GRUHypothesis

    syn = pi.make_activity_data(pi.oja(0.05), pi.FeedForward(3, 2), pi.GaussianInputs.isotropic(3), key=jax.random.key(0),
                                n_trajectories=2, n_trials=30)
    with pytest.warns(UserWarning, match=r"\['gru'\] do not apply to these data"):
        res = compare({"x*y": "x*y", "gru": GRUHypothesis("gru", hidden=2)}, syn.data, steps=5, restarts=1, progress=False,
                      key=jax.random.key(1))
    assert res.hypotheses == ["x*y"]
    res.save(tmp_path / "c")
    assert pi.compare.ComparisonResult.load(tmp_path / "c").hypotheses == ["x*y"]
    with pytest.raises(ComparisonError, match="none of the hypotheses"):
        compare({"gru": GRUHypothesis("gru", hidden=2)}, syn.data, steps=5, restarts=1, progress=False)


def test_a_held_accept_reject_slope_is_not_counted_or_sampled():
    """AcceptReject(learn_weight=False) holds its slope (gradient stopped), yet it was counted in AIC/BIC (n_params 3
    for α and the intercept) and would have been sampled; a fixed softmax β never was."""
    from plasticinfer.bayes._groups import count_free_parameters, parameter_groups
    from plasticinfer.compare import AcceptReject, QAgentRule, agent_model

    data = pi.TrialData.from_dataset(_flies(2))
    held = agent_model(QAgentRule(0.2), AcceptReject(2.0, 0.0, learn_weight=False), data)
    free = agent_model(QAgentRule(0.2), AcceptReject(2.0, 0.0), data)
    assert count_free_parameters(free) - count_free_parameters(held) == 1
    assert not any(g.name.endswith("weight") for g in parameter_groups(held))
    assert any(g.name.endswith("weight") for g in parameter_groups(free))


def test_unconverged_fits_are_named_in_warnings_and_flagged_in_the_saved_comparison(tmp_path):
    """A comparison's convergence warnings say which hypothesis, fold and subject (by label) they are about, and the
    same fits are flagged in fits.csv (column converged), the summary and comparison.md; baselines get no verdict."""
    import warnings

    from plasticinfer.errors import ConvergenceWarning

    data = _flies(n=3)
    names = ["ann", "bob", "cyd"]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        res = compare({"x*r + w": "x*r + w", "x*r - w^2": "x*r - w^2"}, data, steps=2, restarts=1, progress=False,
                      key=jax.random.key(0), subject_names=names)
    said = [str(w.message) for w in record if issubclass(w.category, ConvergenceWarning)]
    fits = res.fits
    bad = fits[fits["converged"].map(lambda v: v is False)]
    assert len(bad) and said  # two steps are not enough
    for h, d in bad.groupby("hypothesis"):
        (message,) = [m for m in said if m.startswith(f"{h}: ")]  # one warning per fit call, naming its hypothesis
        assert f"{len(d)} of 3 subjects not converged" in message
        assert f"subject {names[int(d['subject'].iloc[0])]!r}" in message  # by label, not by position
    assert fits.loc[fits["hypothesis"] == "coin flip", "converged"].map(lambda v: v is None).all()  # nothing optimised
    assert set(fits.loc[fits["hypothesis"] == "x*r + w", "converged"]) <= {True, False}
    note = res.convergence_note()
    assert f"{len(bad)} of {int(fits['converged'].map(lambda v: v is not None).sum())} training fits had not converged" in note
    assert note in res.summary() and note in res.to_markdown()
    res.save(tmp_path / "c")
    table = pd.read_csv(tmp_path / "c" / "fits.csv", keep_default_na=False)
    assert set(table.loc[table["hypothesis"] == "coin flip", "converged"]) == {""}
    assert list(table.loc[table["hypothesis"] == bad["hypothesis"].iloc[0], "converged"].iloc[:1]) in (["False"], [False])
    back = pi.compare.ComparisonResult.load(tmp_path / "c")
    assert back.fits["converged"].tolist() == fits["converged"].tolist() and back.convergence_note() == note


def test_loading_a_comparison_from_a_missing_folder_or_a_file_says_so(tmp_path):
    (tmp_path / "file.csv").write_text("a\n")
    with pytest.raises(ComparisonError, match=r"nope: no such folder; give the folder a comparison was saved to"):
        pi.compare.ComparisonResult.load(tmp_path / "nope")
    with pytest.raises(ComparisonError, match=r"file\.csv: is a file, not a folder"):
        pi.compare.ComparisonResult.load(tmp_path / "file.csv")


def test_a_calibration_fits_warning_says_it_is_the_calibration(tmp_path):
    """Held-out subjects' initial weights fitted on their calibration trials: that fit's convergence warning named
    only the hypothesis and fold, so it read as a second warning about the training fit, and nothing saved said it
    had not converged. Its verdict is in scores.csv (column calibration_converged) and the convergence note."""
    import warnings

    from plasticinfer.errors import ConvergenceWarning

    syn = pi.make_activity_data(pi.TaylorRule.from_terms({"x*y": 1.0}, learning_rate=0.05), pi.FeedForward(3, 2),
                                pi.GaussianInputs.with_spectrum(jax.random.key(0), jnp.array([1.0, 0.5, 0.2])),
                                key=jax.random.key(1), n_trajectories=3, n_trials=30)  # fmt: skip
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        res = compare(["x*y"], syn.data, split=pi.compare.SubjectKFold(3, calibration_fraction=0.3), per_subject=False,
                      baselines=False, steps=3, restarts=1, key=jax.random.key(0), progress=False)  # fmt: skip
    said = [str(w.message) for w in record if issubclass(w.category, ConvergenceWarning)]
    calibration = [m for m in said if m.startswith("x*y, subjects fold 1/3, the calibration fit of the held-out subjects")]
    training = [m for m in said if m.startswith("x*y, subjects fold 1/3: ")]
    assert len(calibration) == 1 and len(training) == 1, said  # three steps converge neither
    warned = {m.split(",")[1].strip() for m in said if "the calibration fit" in m}  # the folds whose calibration warned
    cal = res.unconverged_calibrations()
    assert set(cal["fold"]) == warned and len(cal) == len(warned)  # one held-out subject per fold here
    assert set(res.scores["calibration_converged"]) <= {True, False}  # every held-out subject was calibrated
    note = res.convergence_note()
    assert f"the calibration fits of {len(cal)} of 3 held-out subjects' initial weights had not converged" in note
    res.save(tmp_path / "c")
    assert set(pd.read_csv(tmp_path / "c" / "scores.csv")["calibration_converged"]) <= {True, False}
    back = pi.compare.ComparisonResult.load(tmp_path / "c")
    assert back.scores["calibration_converged"].tolist() == res.scores["calibration_converged"].tolist()
    assert back.convergence_note() == note
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # three steps again
        plain = compare(["x*y"], syn.data, split=pi.compare.SubjectKFold(3), per_subject=False, baselines=False, steps=3,
                        restarts=1, key=jax.random.key(0), progress=False)  # fmt: skip
    assert plain.scores["calibration_converged"].map(lambda v: v is None).all()  # no calibration part: no verdict


def test_mean_activity_counts_only_recorded_neurons():
    """The mean-activity baseline has a mean and an sd per *recorded* neuron: it counted 2 per output neuron, so a
    subject with 1 of 3 neurons recorded was charged 6 parameters in AIC/BIC instead of 2. Each subject its own count
    (subject 0 records neuron 0, subject 1 neurons 1 and 2, subject 2 all three); a new subject's pooled fit the
    union's (not the largest subject's). Checked against a plain Gaussian log-likelihood of the recorded neuron's
    training mean and sd, and through compare's tables."""
    from plasticinfer.compare._baselines import MEAN_ACTIVITY, BaseRate
    from plasticinfer.compare._hypotheses import FitSettings
    from plasticinfer.compare._splits import HeldOutTrials

    syn = pi.make_activity_data(pi.oja(0.05), pi.FeedForward(3, 3), pi.GaussianInputs.isotropic(3), key=jax.random.key(0),
                                n_trajectories=3, n_trials=20)
    mask = np.broadcast_to(np.asarray(syn.data.mask), np.shape(syn.data.observations)).copy()
    mask[0, ..., 1:] = False
    mask[1, ..., 0] = False
    data = pi.TrialData(inputs=syn.data.inputs, observations=syn.data.observations, mask=jnp.asarray(mask))
    (fold,) = HeldOutTrials(0.25).folds(data)
    score = BaseRate(name=MEAN_ACTIVITY).score(fold, FitSettings())
    assert score.per_subject_params and list(score.n_params) == [2, 4, 6]
    # oracle: subject 0's training log-likelihood under its recorded neuron's training mean and (ML) sd
    m = np.broadcast_to(np.asarray(fold.train.mask), np.shape(fold.train.observations))[0]
    x = np.asarray(fold.train.observations)[0][m]
    expected = np.sum(-0.5 * ((x - x.mean()) / x.std()) ** 2 - np.log(x.std()) - 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(score.train_ll[0], expected, rtol=1e-10)
    new = LeaveOneSubjectOut().folds(data)[2]  # subject 2 held out: subjects 0 and 1 together record all three
    assert new.train_subjects.tolist() == [0, 1]
    assert BaseRate(name=MEAN_ACTIVITY).score(new, FitSettings()).n_params == 6
    # compare's tables: each subject's own count, and AIC with it
    res = compare({"x*y": "x*y"}, data, split=HeldOutTrials(0.25), baselines=[BaseRate(name=MEAN_ACTIVITY)], steps=1,
                  restarts=1, progress=False, key=jax.random.key(1))
    ps = res.per_subject().query("hypothesis == @MEAN_ACTIVITY").set_index("subject")
    assert ps["n_params"].to_dict() == {0: 2, 1: 4, 2: 6}
    np.testing.assert_allclose(ps["aic"], -2 * ps["train_ll"] + 2 * np.array([2, 4, 6]), rtol=1e-12)
    fits = res.fits.query("hypothesis == @MEAN_ACTIVITY").set_index("subject")
    assert fits["n_params"].to_dict() == {0: 2, 1: 4, 2: 6}


def test_mean_activity_refuses_a_neuron_held_out_but_never_trained():
    """A neuron recorded only in a subject's held-out trials got mean 0 and sd 1e-6 from the mean-activity baseline:
    a held-out log-likelihood of order -1e12 that made any hypothesis look far better than 'no learning', silently."""
    from plasticinfer.compare._baselines import MEAN_ACTIVITY, BaseRate
    from plasticinfer.compare._hypotheses import FitSettings
    from plasticinfer.compare._splits import HeldOutTrials

    syn = pi.make_activity_data(pi.oja(0.05), pi.FeedForward(3, 3), pi.GaussianInputs.isotropic(3), key=jax.random.key(0),
                                n_trajectories=2, n_trials=20)
    mask = np.broadcast_to(np.asarray(syn.data.mask), np.shape(syn.data.observations)).copy()
    mask[1, :15, 2] = False  # subject 1's neuron 2: only in its last 5 trials, the held-out quarter
    data = pi.TrialData(inputs=syn.data.inputs, observations=syn.data.observations, mask=jnp.asarray(mask))
    (fold,) = HeldOutTrials(0.25).folds(data)
    with pytest.raises(ComparisonError, match=r"neuron\(s\) \[2\] of subject 1 have held-out observations but none in its own"):
        BaseRate(name=MEAN_ACTIVITY).score(fold, FitSettings())
    # a new subject is predicted from every training subject's neurons: subject 0 records neuron 2, so that is fine
    new = LeaveOneSubjectOut().folds(data)[1]
    assert new.train_subjects.tolist() == [0]
    assert np.isfinite(BaseRate(name=MEAN_ACTIVITY).score(new, FitSettings()).test_ll).all()
    mask[0, :, 2] = False  # and with nobody recording it in training, refused
    data = pi.TrialData(inputs=syn.data.inputs, observations=syn.data.observations, mask=jnp.asarray(mask))
    with pytest.raises(ComparisonError, match="none in any training subject's"):
        BaseRate(name=MEAN_ACTIVITY).score(LeaveOneSubjectOut().folds(data)[1], FitSettings())


def test_mean_activity_refuses_a_held_out_neuron_with_no_training_spread():
    """One training value, or a neuron silent (all 0) in training, gave an sd of 1e-6 and a held-out log-likelihood of
    order -1e11 (against about -15 for the clean data): refused by name, like a neuron never trained."""
    from plasticinfer.compare._baselines import MEAN_ACTIVITY, BaseRate
    from plasticinfer.compare._hypotheses import FitSettings
    from plasticinfer.compare._splits import HeldOutTrials

    syn = pi.make_activity_data(pi.oja(0.05), pi.FeedForward(3, 3), pi.GaussianInputs.isotropic(3), key=jax.random.key(0),
                                n_trajectories=2, n_trials=20)
    clean = BaseRate(name=MEAN_ACTIVITY).score(HeldOutTrials(0.25).folds(syn.data)[0], FitSettings())
    assert np.all(clean.test_ll > -100)  # 15 held-out observations each
    mask = np.broadcast_to(np.asarray(syn.data.mask), np.shape(syn.data.observations)).copy()
    mask[0, 1:15, 2] = False  # one training value
    one = pi.TrialData(inputs=syn.data.inputs, observations=syn.data.observations, mask=jnp.asarray(mask))
    obs = np.asarray(syn.data.observations).copy()
    obs[0, :15, 2] = 0.0  # silent in training
    silent = pi.TrialData(inputs=syn.data.inputs, observations=jnp.asarray(obs), mask=syn.data.mask)
    for data in (one, silent):
        with pytest.raises(ComparisonError, match=r"neuron\(s\) \[2\] of subject 0 .* only one value, or only equal values"):
            BaseRate(name=MEAN_ACTIVITY).score(HeldOutTrials(0.25).folds(data)[0], FitSettings())


def test_calibration_leaves_a_trial_to_score():
    """3 valid trials at calibration_fraction=0.9 calibrated on all 3, and the fold was then refused with advice to
    hold out more (or, under SubjectKFold, the subject went unscored): at least one trial is left to score."""
    from plasticinfer.compare._splits import subject_fold, trial_valid

    data = pi.TrialData.from_dataset(_flies(2))
    short = pi.TrialData(inputs=data.inputs, observations=data.observations,
                         mask=jnp.asarray(np.asarray(data.mask) & (np.arange(data.mask.shape[1]) < 3)[None, :]))
    fold = subject_fold(short, "f", [0], [1], calibration_fraction=0.9)
    assert trial_valid(fold.calibration).sum() == 2 and trial_valid(fold.test).sum() == 1


def _partly_recorded(n_trajectories=3, n_trials=20):
    """A 3 → 3 layer where subject 0 records neuron 0, subject 1 neurons 1 and 2, subject 2 all three."""
    syn = pi.make_activity_data(pi.oja(0.05), pi.FeedForward(3, 3), pi.GaussianInputs.isotropic(3), key=jax.random.key(0),
                                n_trajectories=n_trajectories, n_trials=n_trials)
    mask = np.broadcast_to(np.asarray(syn.data.mask), np.shape(syn.data.observations)).copy()
    mask[0, ..., 1:] = False
    mask[1, ..., 0] = False
    return syn, mask


def test_model_hypotheses_count_only_initial_weights_their_training_data_reach():
    """AIC/BIC of a model hypothesis counted every initial weight, also those onto an output neuron a subject never
    recorded, which in a feed-forward layer never reach the likelihood (the fit leaves them where they started): 3
    per unrecorded neuron per subject too many. Oracle: the gradient of the training log-likelihood with respect to
    those rows is exactly zero, and the fitted rows equal the start; counts per subject follow the recorded neurons."""
    from plasticinfer.bayes import count_free_parameters
    from plasticinfer.compare._splits import HeldOutTrials

    syn, mask = _partly_recorded()
    data = pi.TrialData(inputs=syn.data.inputs, observations=syn.data.observations, mask=jnp.asarray(mask))
    model = pi.PlasticityModel.create(pi.TaylorRule.from_terms({"x*y": 0.0}, learning_rate=0.05), pi.FeedForward(3, 3),
                                      pi.GaussianActivity(0.5), n_trajectories=3, key=jax.random.key(2))
    base = count_free_parameters(model, initial_weights=False)
    assert count_free_parameters(model) == base + 27  # without data: every entry
    assert count_free_parameters(model, data=data) == base + 3 * (1 + 2 + 3)
    assert count_free_parameters(model, data=data, per_trajectory=True).tolist() == [base + 3, base + 6, base + 9]
    fitted = pi.fit(model, data, steps=20, progress=False).model
    g = jax.grad(lambda w: eqx.tree_at(lambda m: m.initial_weights["w"], fitted, w).log_likelihood(data).sum())(
        fitted.initial_weights["w"])
    assert np.all(np.asarray(g)[0, 1:] == 0) and np.all(np.asarray(g)[1, 0] == 0) and np.all(np.asarray(g)[0, 0] != 0)
    np.testing.assert_array_equal(np.asarray(fitted.initial_weights["w"])[0, 1:], np.asarray(model.initial_weights["w"])[0, 1:])
    for per_subject, expected in ((True, {0: 3, 1: 6, 2: 9}), (False, None)):
        res = compare({"x*y": model}, data, split=HeldOutTrials(0.25), baselines=False, per_subject=per_subject,
                      steps=2, restarts=1, progress=False, key=jax.random.key(1))
        k = res.fits.set_index("subject")["n_params"].to_dict()
        if per_subject:
            assert {s: v - base for s, v in k.items()} == expected
            assert res.table().loc["x*y", "n_params"] == base + 6  # the mean of the subjects' counts (was subject 0's)
        else:
            assert set(k.values()) == {base + 18}  # the shared fit's total, 18 of the 27 initial weights reached


def test_model_hypotheses_refuse_a_neuron_held_out_but_never_trained():
    """With baselines=False nothing refused a neuron recorded only in held-out trials: a model hypothesis scored it on
    initial weights the fit never set (where it started). Refused by name, as the mean-activity baseline does; a new
    subject is fine when some training subject or its own calibration trials reach the neuron's weights."""
    from plasticinfer.compare._splits import HeldOutTrials

    syn, mask = _partly_recorded(n_trajectories=2)
    mask[1, :15, 2] = False  # subject 1's neuron 2 only in its last 5 trials, the held-out quarter
    data = pi.TrialData(inputs=syn.data.inputs, observations=syn.data.observations, mask=jnp.asarray(mask))
    for per_subject in (False, True):
        fits = []
        with pytest.raises(ComparisonError, match=r"held-out trials of subject 1 depend on initial weights that none of its "
                                                  r"own training trials reach \(initial w at \[\(2, 0\), \(2, 1\), \(2, 2\)\]\)"):
            compare({"x*y": "x*y"}, data, split=HeldOutTrials(0.25), baselines=False, per_subject=per_subject, steps=2,
                    restarts=1, progress=False, key=jax.random.key(1), log=fits.append)
        assert fits == []  # refused before the first fit
    # an input that is 0 in every training trial of subject 0 and not in its held-out ones: column 1, neuron 0
    _, mask = _partly_recorded(n_trajectories=2)
    x = np.asarray(syn.data.inputs["x"]).copy()
    x[0, :15, 1] = 0.0
    quiet_input = pi.TrialData(inputs={"x": jnp.asarray(x)}, observations=syn.data.observations, mask=jnp.asarray(mask))
    with pytest.raises(ComparisonError, match=r"subject 0 depend .* \(initial w at \[\(0, 1\)\]\)"):
        compare({"x*y": "x*y"}, quiet_input, split=HeldOutTrials(0.25), baselines=False, steps=2, restarts=1,
                progress=False, key=jax.random.key(1))
    # subject 0 held out whole (the first fold): subject 1 never records neuron 0
    with pytest.raises(ComparisonError, match=r"fold subject 0: .* subject 0 depend .* that no training subject's trials reach "
                                              r"\(initial w at \[\(0, 0\), \(0, 1\), \(0, 2\)\]\)"):
        compare({"x*y": "x*y"}, data, split=LeaveOneSubjectOut(), baselines=False, per_subject=False, steps=2, restarts=1,
                progress=False, key=jax.random.key(1))
    # with calibration trials that record each subject's neurons (neuron 2 of subject 1 throughout again), scored
    _, mask = _partly_recorded(n_trajectories=2)
    data = pi.TrialData(inputs=syn.data.inputs, observations=syn.data.observations, mask=jnp.asarray(mask))
    res = compare({"x*y": "x*y"}, data, split=SubjectKFold(2, calibration_fraction=0.25),
                  baselines=False, per_subject=False, steps=2, restarts=1, progress=False, key=jax.random.key(1))
    assert set(res.scores["subject"]) == {0, 1} and np.isfinite(res.scores["test_ll"]).all()


def test_a_new_subject_starts_from_the_mean_of_the_weights_training_reached():
    """A new subject's initial weights were the mean over every training subject's fitted initial weights, including
    rows a subject never recorded (still at their random start). Now the mean over the subjects that reached each row."""
    from plasticinfer.bayes import reachable_initial_weights
    from plasticinfer.compare._hypotheses import FitSettings, _new_subjects_model

    syn, mask = _partly_recorded()
    data = pi.TrialData(inputs=syn.data.inputs, observations=syn.data.observations, mask=jnp.asarray(mask))
    fold = LeaveOneSubjectOut().folds(data)[2]  # subjects 0 (neuron 0) and 1 (neurons 1, 2) train
    model = pi.PlasticityModel.create(pi.TaylorRule.from_terms({"x*y": 0.0}, learning_rate=0.05), pi.FeedForward(3, 3),
                                      pi.GaussianActivity(0.5), n_trajectories=2, key=jax.random.key(2))
    reach = reachable_initial_weights(model, fold.train)
    w = np.asarray(model.initial_weights["w"])
    test_model, _ = _new_subjects_model(model, model, fold, FitSettings(), reach)
    got = np.asarray(test_model.initial_weights["w"])[0]
    np.testing.assert_allclose(got[0], w[0, 0], rtol=1e-12)  # only subject 0 recorded neuron 0
    np.testing.assert_allclose(got[1:], w[1, 1:], rtol=1e-12)  # only subject 1 recorded neurons 1 and 2
    assert not np.allclose(got, w.mean(0))  # what it was


def test_the_pre_fit_check_sees_plastic_paths_of_a_rule_starting_at_zero_and_drops_a_static_baseline_it_refuses():
    """An input active only in held-out trials that come *before* training trials reaches the training likelihood
    through learning: the check judged reachability at the start, where a rule at 0 has no plastic path, and refused
    the rule; the same rule started at 0.05 passed. It now also looks at a copy with every parameter perturbed. The
    static-weights baseline has no plastic path, so it is truly refused there; as a standard baseline the user did
    not name, it is left out with a warning instead of refusing the whole comparison."""
    from plasticinfer.compare._hypotheses import FitSettings, ModelHypothesis
    from plasticinfer.compare._splits import HeldOutTrials

    syn = pi.make_activity_data(pi.oja(0.05), pi.FeedForward(3, 3), pi.GaussianInputs.isotropic(3), key=jax.random.key(0),
                                n_trajectories=2, n_trials=40)
    x = np.asarray(syn.data.inputs["x"]).copy()
    x[:, :, 1] = 0.0
    x[:, 15:20, 1] = 1.0  # input 1 only in block 0's held-out quarter, trials 15-19, before block 1's training trials
    data = pi.TrialData(inputs={"x": jnp.asarray(x)}, observations=syn.data.observations, mask=syn.data.mask)
    blocks = np.repeat((np.arange(40) >= 20)[None].astype(int), 2, 0)
    folds = HeldOutTrials(0.25).folds(data, blocks=blocks)
    for theta in (0.0, 0.05):
        model = pi.PlasticityModel.create(pi.TaylorRule.from_terms({"x*y": theta}, learning_rate=1.0), pi.FeedForward(3, 3),
                                          pi.GaussianActivity(0.5), n_trajectories=2, key=jax.random.key(2))
        ModelHypothesis("x*y", model).check(data, FitSettings(), folds)  # passes at either start
    with pytest.warns(pi.PlasticInferWarning, match=r"'static weights' baseline cannot be scored on this split and was left out"):
        res = compare({"x*y": model}, data, split=HeldOutTrials(0.25), blocks=blocks, steps=2, restarts=1, progress=False,
                      key=jax.random.key(1))
    assert "static weights" not in set(res.scores["hypothesis"]) and "x*y" in set(res.scores["hypothesis"])
