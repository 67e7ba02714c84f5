"""The public namespace: a small top level, specialist names behind their subpackages, no clashes."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest

import plasticinfer as pi

SUBPACKAGES = ("bayes", "compare", "data", "datasets", "discovery", "distributed", "fly", "metalearn")

# A name at the top level that a subpackage uses for a *different* object, on purpose:
DELIBERATE = {
    ("compare", "compare"): "pi.compare is the subpackage; pi.compare.compare its engine (optax.adam style)",
    ("datasets", "load"): "pi.datasets.load(name) loads a named dataset; pi.load(path) a file",
    ("distributed", "fit_independent"): "the multi-process version of pi.fit_independent, same arguments and result",
}


def _public_names_of_a_fresh_import() -> list[str]:
    """dir(plasticinfer) in a new interpreter: other tests' imports of submodules (cli, ...) don't leak in."""
    code = "import json, plasticinfer as pi; print(json.dumps([n for n in dir(pi) if not n.startswith('_')]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(pi.__file__).parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_top_level_is_small():
    assert len(pi.__all__) <= 55, len(pi.__all__)
    assert len(pi.__all__) == len(set(pi.__all__)), "duplicates in __all__"


def test_all_matches_what_the_package_exposes():
    assert sorted(_public_names_of_a_fresh_import()) == sorted(pi.__all__)


def test_every_top_level_name_resolves():
    missing = [n for n in pi.__all__ if not hasattr(pi, n)]
    assert not missing, missing


def test_the_everyday_path_is_at_the_top_level():
    core = {"load", "validate", "TrialData", "TaylorRule", "MLPRule", "Monomial", "FeedForward", "ChoiceCircuit",
            "GaussianActivity", "BernoulliChoice", "PlasticityModel", "simulate", "Trajectory", "fit",
            "fit_independent", "FitResult", "make_activity_data", "make_choice_data", "PlasticInferError",
            "DataError", "ModelError", "FitDivergedError", *SUBPACKAGES}
    assert core <= set(pi.__all__), sorted(core - set(pi.__all__))


def test_specialist_names_live_in_their_subpackage_only():
    moved = {"NUTS": "bayes", "Laplace": "bayes", "Priors": "bayes", "LeaveFutureOut": "compare",
             "deviance_explained": "compare", "cosine_similarity": "compare", "LIFHomeostasisObjective": "discovery",
             "gradient_search": "discovery", "DigitsEpisodes": "metalearn", "tune_scale": "metalearn",
             "load_mat": "data", "SchemaError": "data", "write_netcdf": "data", "simulate_choices": "data"}
    for name, sub in moved.items():
        assert name not in pi.__all__ and not hasattr(pi, name), name
        assert name in getattr(pi, sub).__all__, (sub, name)


def test_compare_is_the_subpackage():
    import plasticinfer.compare

    assert isinstance(pi.compare, types.ModuleType)
    assert pi.compare is plasticinfer.compare is sys.modules["plasticinfer.compare"]
    assert callable(pi.compare.compare) and pi.compare.compare.__module__ == "plasticinfer.compare._compare"


def test_laplace_prior_and_laplace_intervals_do_not_clash():
    assert "Laplace" not in pi.__all__ and pi.bayes.Laplace.__module__ == "plasticinfer.bayes._priors"
    assert "laplace_intervals" in pi.__all__ and "laplace_intervals" not in pi.bayes.__all__


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_subpackage_all_resolves(sub):
    module = getattr(pi, sub)
    assert isinstance(module, types.ModuleType) and module.__name__ == f"plasticinfer.{sub}"
    names = module.__all__
    assert names and len(names) == len(set(names)), f"plasticinfer.{sub}.__all__ is empty or has duplicates"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, (sub, missing)
    assert not [n for n in names if n.startswith("_")], sub


def test_no_top_level_name_means_something_else_in_a_subpackage():
    clashes = {
        (sub, name)
        for sub in SUBPACKAGES
        for name in getattr(pi, sub).__all__
        if name in pi.__all__ and getattr(getattr(pi, sub), name) is not getattr(pi, name)
    }
    assert clashes == set(DELIBERATE), sorted(clashes ^ set(DELIBERATE))


def test_no_two_subpackages_use_one_name_for_different_objects():
    """`pi.bayes.AbstractPrior` and a discovery prior, or two `NetworkState`s, would be read as one concept."""
    deliberate = {("data", "datasets", "load"): "as pi.load vs pi.datasets.load above",
                  ("bayes", "distributed", "sample"): "the multi-process version of pi.bayes.sample, same arguments"}
    owner: dict[str, tuple[str, object]] = {}
    clashes = []
    for sub in SUBPACKAGES:
        for name in getattr(pi, sub).__all__:
            obj = getattr(getattr(pi, sub), name)
            if name in owner and owner[name][1] is not obj and (owner[name][0], sub, name) not in deliberate:
                clashes.append((owner[name][0], sub, name))
            owner.setdefault(name, (sub, obj))
    assert not clashes, clashes


def test_one_deviance_explained():
    assert not hasattr(pi, "deviance_explained") and not hasattr(pi.fly, "deviance_explained")
    assert pi.compare.deviance_explained.__module__ == "plasticinfer.compare._stats"


# --------------------------------------------------------------------------------------
# Consistent conventions across subpackages
# --------------------------------------------------------------------------------------


def _progress_defaults():
    import inspect

    functions = [pi.fit, pi.fit_independent, pi.compare.compare, pi.fly.analyse_choices, pi.discovery.gradient_search,
                 pi.discovery.cma_search, pi.metalearn.meta_learn, pi.metalearn.feedback_alignment_experiment,
                 pi.compare.FitSettings]
    return {f.__qualname__: inspect.signature(f).parameters["progress"].default for f in functions}


def test_progress_defaults_to_true_everywhere():
    defaults = _progress_defaults()
    assert all(v is True for v in defaults.values()), defaults


def test_progress_bars_only_where_someone_watches(monkeypatch):
    import io

    from plasticinfer._progress import show_progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file, a pipe, pytest's capture
    assert not show_progress(True) and not show_progress(False)
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert show_progress(True) and not show_progress(False)


def test_fit_with_default_progress_writes_nothing_to_a_captured_stderr(capfd):
    import jax

    syn = pi.make_activity_data(pi.oja(0.05), pi.FeedForward(3, 2), pi.GaussianInputs.isotropic(3), key=jax.random.key(0),
                                n_trajectories=1, n_trials=10)
    model = pi.PlasticityModel.create(pi.TaylorRule.from_terms({"x*y": 0.5}, learning_rate=0.05), pi.FeedForward(3, 2),
                                      pi.GaussianActivity(0.5), n_trajectories=1, key=jax.random.key(1))
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 3 steps: not converged, and that is not the point here
        pi.fit(model, syn.data, steps=3)  # progress=True by default
    assert "it/s" not in capfd.readouterr().err


def test_result_types_share_field_names():
    import dataclasses

    results = [pi.FitResult, pi.metalearn.MetaLearnResult, pi.discovery.SearchResult, pi.discovery.NPEResult,
               pi.compare.GRUFit, pi.bayes.Posterior]
    for cls in results:
        fields = {f.name for f in dataclasses.fields(cls)}
        assert "loss_history" in fields, cls
        assert not fields & {"history", "train_loss", "svi_loss", "validation_loss"}, (cls, fields)
    for cls in (pi.FitResult, pi.metalearn.MetaLearnResult):
        assert "diverged_at" in {f.name for f in dataclasses.fields(cls)}
    # -1 for "never", an int, on both (it used to be None on MetaLearnResult)
    assert {f.name: f.type for f in dataclasses.fields(pi.metalearn.MetaLearnResult)}["diverged_at"] in (int, "int")


def test_every_error_and_warning_class_is_public_in_errors():
    import inspect

    import plasticinfer._errors as private
    import plasticinfer.errors as errors

    defined = {n for n, obj in vars(private).items() if inspect.isclass(obj) and obj.__module__ == private.__name__}
    assert defined == set(errors.__all__), sorted(defined ^ set(errors.__all__))
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert cls is getattr(private, name)
        base = errors.PlasticInferWarning if issubclass(cls, Warning) else errors.PlasticInferError
        assert issubclass(cls, base), name
    # the subpackages re-export the very same classes, never look-alikes
    for sub in SUBPACKAGES:
        module = getattr(pi, sub)
        for name in getattr(module, "__all__", []):
            if name in errors.__all__:
                assert getattr(module, name) is getattr(errors, name), (sub, name)
    assert pi.PlasticInferWarning is errors.PlasticInferWarning


def test_one_filter_silences_every_library_warning():
    import plasticinfer.errors as errors

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=pi.PlasticInferWarning)
        for name in ("ConvergenceWarning", "DivergenceWarning", "InterruptedWarning", "PosteriorWarning"):
            warnings.warn("x", getattr(errors, name))
    assert caught == []
