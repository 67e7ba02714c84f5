"""The command-line defects of the CLI audit (one test per finding), through the real entry point in subprocesses where
the finding is about what a user of `plasticinfer` sees; small inputs, so each takes seconds."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from helpers import REPO
from test_cli_errors import _cli

import plasticinfer as pi
import plasticinfer.errors
from plasticinfer._cli_common import in_command_line_terms
from plasticinfer._convert import activity_dataset
from plasticinfer._errors import ComparisonError, FileFormatError
from plasticinfer._io import write_text, write_together
from plasticinfer.cli import run

MAP = ["--map", "subject=animal", "--map", "choice=side", "--map", "reward=rewarded", "--choice-codes", "L=0,R=1"]
QUICK = ["--steps", "2", "--restarts", "1", "--quiet"]


def _rows(subjects=("m1", "m2", "m3"), trials=30) -> list[str]:
    rng = random.Random(0)
    rows = ["animal,trial,side,rewarded"]
    for a in subjects:
        for t in range(trials):
            s = rng.choice("LR")
            rows.append(f"{a},{t},{s},{int(rng.random() < (0.7 if s == 'L' else 0.3))}")
    return rows


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("audit")
    rule = pi.TaylorRule.from_equation("x*y - y^2*w", learning_rate=0.01)
    syn = pi.make_activity_data(rule, pi.FeedForward(3, 2), pi.GaussianInputs.with_spectrum(jax.random.key(0), jnp.array([2.0, 1.0, 0.5])),
                                key=jax.random.key(1), n_trajectories=2, n_trials=20)
    nc = base / "sim.nc"
    pi.data.write_netcdf(activity_dataset(syn), nc)
    one = base / "one_trial.nc"
    pi.data.write_netcdf(xr.load_dataset(nc).isel(trial=slice(0, 1)), one)
    rows = _rows()
    (base / "good.csv").write_text("\n".join(rows) + "\n")
    (base / "one_trial.csv").write_text("\n".join(rows + ["m4,0,L,1"]) + "\n")  # m4: one trial, none held out
    (base / "semi.csv").write_text("\n".join(r.replace(",", ";") for r in rows) + "\n")
    (base / "comma.tsv").write_text("\n".join(rows) + "\n")
    coded = ["subject,trial,choice,reward"] + [f"{a},{t},{1 + (t % 2)},{t % 3 == 0:d}" for a in "ab" for t in range(20)]
    for name, bad in (("num_neg", "-1"), ("num_frac", "1.5")):  # one bad code in data row 3 of 1/2 coding (row 0 holds 1)
        x = list(coded)
        x[4] = f"a,3,{bad},1"
        (base / f"{name}.csv").write_text("\n".join(x) + "\n")
    matrix = np.random.default_rng(0).integers(0, 2, (4, 300)).astype(float)
    np.savetxt(base / "matrix.csv", matrix, delimiter=",")  # no header: the first row of numbers is read as one
    return base


def _one_line(proc, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    if code == 2:
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
    return proc.stderr


# --- 1: --seed out of range: a usage error (2) naming --seed, not a crash (1) ---------------------------------------

SEEDED = [
    ["demo"], ["simulate", "{tmp}/a.nc"], ["fit", "{nc}"], ["compare", "--synthetic", "choice"], ["fly"],
    ["discover", "pc1"], ["discover", "pca-network"], ["discover", "homeostasis"], ["discover", "families"],
    ["discover", "feedback-alignment"],
]


@pytest.mark.parametrize("argv", SEEDED, ids=[" ".join(a) for a in SEEDED])
@pytest.mark.parametrize("seed", [str(2**63), "-1"])
def test_seed_out_of_range_is_refused_on_every_command(argv, seed, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(tmp=tmp_path, nc=inputs / "sim.nc") for a in argv]
    assert run([*argv, "--seed", seed]) == 2
    err = capsys.readouterr().err
    assert "'--seed'" in err and "between 0 and" in err, err
    assert list(tmp_path.iterdir()) == []


def test_seed_out_of_range_through_the_entry_point(inputs, tmp_path):
    for argv in (["simulate", str(tmp_path / "q.nc"), "--trials", "3", "--no-plot"], ["fit", str(inputs / "sim.nc"), *QUICK]):
        err = _one_line(_cli(*argv, "--seed", str(2**63), cwd=tmp_path))
        assert "Invalid value for '--seed'" in err and "OverflowError" not in err
    assert list(tmp_path.iterdir()) == []


# --- 2: every output file checked before any work; all files written, or none ----------------------------------------


def test_output_files_blocked_by_a_folder_are_refused_before_work(inputs, tmp_path):
    (tmp_path / "s.png").mkdir()
    err = _one_line(_cli("simulate", str(tmp_path / "s.nc"), "--trials", "5", "--trajectories", "2", cwd=tmp_path))
    assert "s.png is an existing folder" in err
    assert not (tmp_path / "s.nc").exists()

    (tmp_path / "f" / "coefficients.png").mkdir(parents=True)
    t0 = time.perf_counter()
    err = _one_line(_cli("fit", str(inputs / "sim.nc"), "--out", str(tmp_path / "f"), "--steps", "2000", "--restarts", "1", "--quiet"))
    assert "coefficients.png is an existing folder" in err
    assert time.perf_counter() - t0 < 60  # refused at once, not after 2000 steps
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["coefficients.png"]

    (tmp_path / "c" / "comparison.png").mkdir(parents=True)
    err = _one_line(_cli("compare", str(inputs / "good.csv"), *MAP, "-H", "x*r", "--no-baselines", *QUICK, "--out", str(tmp_path / "c")))
    assert "comparison.png is an existing folder" in err
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["comparison.png"]


def test_a_failed_write_leaves_none_of_the_outputs(inputs, tmp_path, capsys, monkeypatch):
    """fit writes results.nc and summary.md, then the figure fails: neither is left (nor the folder it created)."""
    import plasticinfer._cli_core as core

    def broken_plot(coefficients, path, *, title):
        raise FileFormatError(f"cannot write {str(path)!r}: disk full")

    monkeypatch.setattr(core, "_coefficient_plot", broken_plot)
    out = tmp_path / "fit"
    assert run(["fit", str(inputs / "sim.nc"), "--out", str(out), *QUICK]) == 2
    assert "disk full" in capsys.readouterr().err
    assert not out.exists()


def test_write_together_moves_all_files_or_none(tmp_path):
    with write_together():
        write_text("a", tmp_path / "a.txt")
        assert not (tmp_path / "a.txt").exists()  # waits under its temporary name
        write_text("b", tmp_path / "b.txt")
    assert (tmp_path / "a.txt").read_text() == "a" and (tmp_path / "b.txt").read_text() == "b"

    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), write_together():
        write_text("new", tmp_path / "a.txt")
        write_text("c", tmp_path / "c.txt")
        raise RuntimeError("a failure before the end")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]  # no temporary file, no c.txt
    assert (tmp_path / "a.txt").read_text() == "old"


# --- 3: compare and subjects without held-out trials ------------------------------------------------------------------


def test_compare_leaves_subjects_without_heldout_trials_out_of_the_means(inputs, tmp_path):
    out = tmp_path / "c"
    proc = _cli("compare", str(inputs / "one_trial.csv"), *MAP, "-H", "x*r", "--no-baselines", *QUICK, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "warning: subject(s) ['m4'] have no held-out trials" in proc.stderr
    assert "m4: no held-out trials" in proc.stdout
    table = pd.read_csv(out / "comparison.csv", index_col=0)
    assert np.isfinite(table["mean_normalized_likelihood"]).all() and np.isfinite(table["se_normalized_likelihood"]).all()


def test_compare_api_warns_about_and_refuses_subjects_without_heldout_trials(inputs):
    ds = pi.data.load_table(inputs / "one_trial.csv", columns={"subject": "animal", "choice": "side", "reward": "rewarded"},
                            choice_codes={"L": 0, "R": 1})
    with pytest.warns(UserWarning, match=r"\['m4'\] have no held-out trials"):
        result = pi.compare.compare(["x*r"], ds, baselines=False, steps=2, restarts=1, progress=False)
    assert result.unscored_subjects() == ["m4"]
    assert np.isfinite(result.table()["mean_normalized_likelihood"]).all()
    single = ds.isel(trial=slice(0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ComparisonError, match="no held-out trials"):
            pi.compare.compare(["x*r"], single, baselines=False, steps=2, restarts=1, progress=False)


# --- 4: choice-code errors name the offending row and value -------------------------------------------------------------


def test_choice_code_errors_name_the_bad_row(inputs):
    for name, value in (("num_neg", "-1"), ("num_frac", "1.5")):
        err = _one_line(_cli("inspect", str(inputs / f"{name}.csv")))
        assert "row 3 " in err and f"found {value}" in err and "look like 1-based coding" in err, err


# --- 7, 8: help texts the program accepts ---------------------------------------------------------------------------------


def test_compare_help_example_parses(tmp_path):
    proc = _cli("compare", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.replace("│", " ").split())
    assert "'x*(r-E[r]) + w'" in text and "'x*(r-E) + w'" not in text
    pi.compare.parse_hypothesis("x*(r-E[r]) + w")  # the example as shown


def test_fly_names_only_the_splits_it_accepts(tmp_path):
    err = _one_line(_cli("fly", "--gru", "4", "--out", str(tmp_path / "o"), cwd=tmp_path))
    assert "add --split dataset or kfold." in err and "subject" not in err.split("--split")[-1]
    help_text = " ".join(_cli("fly", "--help", cwd=tmp_path).stdout.replace("│", " ").split())
    assert "(dataset, kfold)" in help_text and "(dataset, kfold, subject)" not in help_text


# --- 9, 10, 16: tables: wrong delimiter, repeated --map, a numeric header ----------------------------------------------------


def test_a_wrong_delimiter_is_named(inputs):
    err = _one_line(_cli("inspect", str(inputs / "semi.csv"), *MAP))
    assert "looks ';'-separated" in err and "rename it to .txt" in err and "Fix the --map" not in err
    err = _one_line(_cli("inspect", str(inputs / "comma.tsv"), *MAP))
    assert "looks ','-separated" in err and "tab-separated" in err


def test_a_repeated_map_is_refused_by_name(inputs):
    base = ["inspect", str(inputs / "good.csv"), "--map", "subject=animal", "--choice-codes", "L=0,R=1"]
    err = _one_line(_cli(*base, "--map", "choice=side", "--map", "choice=rewarded", "--map", "reward=rewarded"))
    assert "--map gives 'choice' twice (choice=side and choice=rewarded)" in err
    err = _one_line(_cli(*base, "--map", "choice=side", "--map", "reward=side"))
    assert "column 'side' would be read as both 'choice' and 'reward'" in err and "--map" in err and "columns=" not in err


def test_a_numeric_header_gives_a_short_message(inputs):
    err = _one_line(_cli("inspect", str(inputs / "matrix.csv")))
    assert len(err) < 900, err
    assert "300 columns in all" in err and "the header row is numbers" in err


# --- 13, 14: --heldout leaving nothing; empty paths ---------------------------------------------------------------------


def test_heldout_leaving_no_validation_trials_names_the_option_and_file(inputs, tmp_path):
    err = _one_line(_cli("fit", str(inputs / "one_trial.nc"), "--heldout", "0.5", *QUICK, "--out", str(tmp_path / "o")))
    assert "--heldout 0.5 leaves no validation trials in" in err and "one_trial.nc" in err
    assert not (tmp_path / "o").exists()


def test_empty_paths_are_refused(inputs, tmp_path):
    for argv, fragment in (
        (["fit", "", *QUICK], "DATA is empty"),
        (["fit", str(inputs / "sim.nc"), "--out", "", *QUICK], "Invalid value for '--out': is empty"),
        (["simulate", ""], "is empty"),
        (["inspect", ""], "is empty"),
    ):
        assert fragment in _one_line(_cli(*argv, cwd=tmp_path)), argv
    assert list(tmp_path.iterdir()) == []


# --- 15, 17: messages in command-line terms; PLASTICINFER_DATA_DIR ------------------------------------------------------------


def test_messages_name_the_options(inputs, tmp_path):
    err = _one_line(_cli("compare", str(inputs / "good.csv"), *MAP, "--split", "kfold", "--folds", "1", "--out", str(tmp_path / "k")))
    assert "--folds 1" in err
    err = _one_line(_cli("compare", str(inputs / "good.csv"), *MAP, "--split", "kfold", "--folds", "5", *QUICK, "--out", str(tmp_path / "k")))
    assert "2 ≤ --folds ≤ the number of subjects (3)" in err and "SubjectKFold" not in err
    assert "'--prune'" in _one_line(_cli("discover", "pc1", "--prune", "2", "--out", str(tmp_path / "p")))
    assert "'--simulations': must be at least 20" in _one_line(_cli("discover", "families", "--simulations", "5", "--out", str(tmp_path / "s")))
    assert "Give a .mat file" in _one_line(_cli("fit", str(tmp_path), "--out", str(tmp_path / "o")))
    assert not any(tmp_path.iterdir())
    # the library's Python advice, as the command line prints it
    assert in_command_line_terms("(state saved to o/checkpoint.nc; resume=True continues it)") == "(state saved to o/checkpoint.nc; --resume continues it)"
    assert "Use another --out" in in_command_line_terms("belongs to a different fit. Use another checkpoint path, delete")


# the library's messages that reach the command line with Python advice: each phrase is still in its source (a rewording
# would silently end its translation) and reads, translated, without the Python call
ADVICE = [
    ("bayes/_nuts.py", "pass checkpoint=PATH to make a long run resumable", "--checkpoint-every N", "checkpoint="),
    ("data/_matlab.py", "Pass drop_incomplete=True to drop them.", "Remove them from the file (in Python", "Pass drop_"),
    ("data/_datasets.py", "(or pass verify=False at your own risk)", "in Python, load it with verify=False", "pass verify"),
    ("bayes/_sample.py", "start from a MAP fit (init=...), ", "", "init="),
    ("_fit.py", "to fit only the other parts, pass fit_rule=False", "", "fit_rule"),
]


@pytest.mark.parametrize("source, phrase, becomes, gone", ADVICE, ids=[a[0] for a in ADVICE])
def test_python_advice_reaching_the_command_line_is_translated(source, phrase, becomes, gone):
    text = (REPO / "plasticinfer" / source).read_text()
    assert phrase in " ".join(re.sub(r'"\s*\n\s*f?"', "", text).split()), f"{source} no longer says {phrase!r}"
    said = in_command_line_terms(f"error: x; {phrase} y")
    assert becomes in said and gone not in said, said


def test_a_missing_data_dir_variable_is_refused(tmp_path):
    env = dict(os.environ, PLASTICINFER_DATA_DIR=str(tmp_path / "nope"), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "plasticinfer.cli", "fly", *QUICK, "--out", str(tmp_path / "o")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=180)
    assert f"PLASTICINFER_DATA_DIR={tmp_path / 'nope'} is not a folder" in _one_line(proc)
    assert list(tmp_path.iterdir()) == []


# --- 6: options that do not apply under the chosen settings are refused, not ignored ------------------------------------

UNUSED = [
    (["compare", "--synthetic", "choice", "--calibration", "0.5"], "--calibration applies to --split subject, dataset or kfold"),
    (["compare", "--synthetic", "choice", "--split", "kfold", "--heldout", "0.3"], "--heldout applies to --split heldout or future"),
    (["compare", "--synthetic", "choice", "--folds", "3"], "--folds applies to --split kfold"),
    (["compare", "{csv}", "--subjects", "3"], "--subjects sets the number of subjects of --synthetic data"),
    (["compare", "--synthetic", "choice", "--gru-steps", "5"], "--gru-steps applies to the --gru rows"),
    (["fly", "--warmup", "10"], "--warmup applies to the hierarchical NUTS fit"),
    (["fly", "--draws", "10"], "--draws applies to the hierarchical NUTS fit"),
    (["fly", "--target-accept", "0.95"], "--target-accept applies to the hierarchical NUTS fit"),
    (["fly", "--folds", "3"], "--folds applies to --split kfold"),
    (["fly", "--split", "kfold", "--heldout", "0.3"], "--heldout applies to --split heldout; dataset and kfold hold out whole flies"),
    (["discover", "homeostasis", "--model", "lif", "--method", "cma", "--correlated", "0.5"], "--correlated applies to the rate model"),
    (["discover", "homeostasis", "--method", "gradient", "--generations", "3"], "--generations applies to CMA-ES"),
]


def test_options_that_do_not_apply_are_refused(inputs, tmp_path):
    for argv, fragment in UNUSED:
        argv = [a.format(csv=inputs / "good.csv") for a in argv]
        assert fragment in _one_line(_cli(*argv, "--out", str(tmp_path / "o"), cwd=tmp_path)), argv
    assert list(tmp_path.iterdir()) == []


def test_choices_that_read_both_ways_get_a_warning_line_in_command_line_terms(tmp_path):
    """A file whose every choice is 1 reads as 0-based and as 1-based: the command says which it took, and the option
    that takes the other, on one line."""
    (tmp_path / "ones.csv").write_text("choice,reward\n" + "1,1\n1,0\n" * 5)
    proc = _cli("inspect", str(tmp_path / "ones.csv"))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "read as 0-based" in lines[0] and lines[0].endswith("pass --choice-codes 1=0,2=1"), proc.stderr
    assert "choice_codes" not in proc.stderr
    proc = _cli("inspect", str(tmp_path / "ones.csv"), "--choice-codes", "1=0,2=1")
    assert proc.returncode == 0 and "warning:" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("rule", "code", "message"),
    [
        ("1e400*x*y", 2, "the coefficient of 'x\\*y' in the rule '1e400\\*x\\*y' must be a finite number; got 1e400"),
        ("1e400*(x*y)", 2, "the learning rate η must be a finite number; its scale 1e400 times"),
        pytest.param("1e30*x*y - 1e30*w", 2, r"diverged in simulation .*learning rate 0\.005, coefficients up to 1e\+30 in size\); "
                     "lower the learning rate or the coefficients", marks=pytest.mark.slow),  # a whole simulation: 5 s
    ],
)
def test_a_rule_that_cannot_be_simulated_names_its_cause(tmp_path, rule, code, message):
    """An infinite coefficient is refused as such (it was blamed on the learning rate); a divergence names both knobs."""
    import re

    proc = _cli("simulate", str(tmp_path / "sim.nc"), "--rule", rule, "--trials", "20")
    assert proc.returncode == code and re.search(message, proc.stderr), proc.stderr  # 2: the rule given cannot run
    assert not (tmp_path / "sim.nc").exists()
    if "1e400*x*y" == rule:
        with pytest.raises(pi.ModelError, match="must be a finite number"):
            pi.TaylorRule.from_equation(rule)


# --- a stranger's CLI audit: a data folder that is a file, a rate that would be ignored, a perfect null, the demo ---------


def test_a_data_dir_variable_that_is_not_a_folder_is_refused_by_every_datasets_command(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), PLASTICINFER_DATA_DIR=str(tmp_path / "file.csv"))
    (tmp_path / "file.csv").write_text("x")
    for argv in (["datasets", "list"], ["datasets", "info", "rajagopalan2023"], ["datasets", "download", "rajagopalan2023"]):
        proc = subprocess.run([sys.executable, "-m", "plasticinfer.cli", *argv], capture_output=True, text=True, env=env, timeout=300)
        err = _one_line(proc)  # download: "internal error ... FileExistsError", exit 1; list/info: "not found", exit 0
        assert "PLASTICINFER_DATA_DIR=" in err and "is not a folder" in err, argv


def test_compare_refuses_a_learning_rate_that_choice_rules_ignore(inputs, tmp_path):
    err = _one_line(_cli("compare", str(inputs / "good.csv"), *MAP, "-H", "x*r", "--learning-rate", "0.5", *QUICK,
                         "--out", str(tmp_path / "c")))
    assert "--learning-rate sets η of activity rules; choice rules use η = 1" in err
    assert not (tmp_path / "c").exists()


def test_deviance_explained_is_nan_where_the_null_predicts_every_choice():
    from plasticinfer.compare._stats import deviance_explained

    out = deviance_explained([-1.0, -0.5, -0.3], [-1e-22, -1.0, -0.0])  # printed as −1e+20 % before
    assert np.isnan(out[0]) and out[1] == 0.5 and np.isnan(out[2])


def test_the_demo_summary_says_when_it_is_unfinished(tmp_path):
    import dataclasses

    from plasticinfer._recovery import oja_recovery

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pi.errors.ConvergenceWarning)
        report = oja_recovery(key=jax.random.key(0), n_pre=4, n_post=2, n_trajectories=2, n_trials=20, steps=2, progress=False)
    assert not report.fit.converged and "not converged: " + report.fit.convergence_message in report.summary()
    stopped = dataclasses.replace(report, fit=dataclasses.replace(report.fit, interrupted=True))
    stopped.save(tmp_path / "demo")
    text = (tmp_path / "demo" / "summary.md").read_text()
    assert "INTERRUPTED: the figures below are from the best parameters so far" in text and "not converged" in text
    assert "INTERRUPTED" not in report.summary()
