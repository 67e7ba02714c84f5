"""Every error the library raises on purpose is a PlasticInferError, defined in one module."""

from __future__ import annotations

import ast
import builtins
import inspect
from pathlib import Path

import pytest

import plasticinfer as pi
from plasticinfer import _errors

LIBRARY = Path(pi.__file__).parent
BUILTIN = {name for name, obj in vars(builtins).items() if isinstance(obj, type) and issubclass(obj, BaseException)}
# Abstract-method placeholders are a contract with subclass authors, not an error a user can cause.
ALLOWED = {"NotImplementedError", "KeyboardInterrupt"}  # the user's own Ctrl-C, passed on up (plasticinfer/_interrupt.py)


def _raised_names(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name):
                yield node.lineno, exc.id


def test_library_raises_no_bare_builtin_exception():
    offenders = []
    for path in sorted(LIBRARY.rglob("*.py")):
        for line, name in _raised_names(ast.parse(path.read_text(encoding="utf-8"))):
            if name in BUILTIN and name not in ALLOWED:
                offenders.append(f"{path.relative_to(LIBRARY)}:{line} raises {name}")
    assert not offenders, "raise a PlasticInferError subclass instead:\n" + "\n".join(offenders)


def test_scan_catches_a_bare_raise():
    """The scan above is not vacuous: it flags a builtin raise and ignores a library one."""
    code = "def f():\n    raise ValueError('x')\n\ndef g():\n    raise ModelError('y')\n"
    names = [n for _, n in _raised_names(ast.parse(code))]
    assert names == ["ValueError", "ModelError"]
    assert "ValueError" in BUILTIN and "ModelError" not in BUILTIN


def test_no_error_classes_outside_errors_module():
    """Exception and warning classes are defined only in plasticinfer/_errors.py."""
    stray = []
    for path in sorted(LIBRARY.rglob("*.py")):
        if path.name == "_errors.py" and path.parent == LIBRARY:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Warning")):
                stray.append(f"{path.relative_to(LIBRARY)}:{node.lineno} {node.name}")
    assert not stray, stray
    assert not any(p.name == "_errors.py" for p in LIBRARY.rglob("*/_errors.py"))


def test_hierarchy():
    errors = [c for _, c in inspect.getmembers(_errors, inspect.isclass) if issubclass(c, Exception) and not issubclass(c, Warning)]
    warnings_ = [c for _, c in inspect.getmembers(_errors, inspect.isclass) if issubclass(c, Warning)]
    assert len(errors) >= 10 and len(warnings_) >= 3
    for c in errors:
        assert issubclass(c, pi.PlasticInferError), c
    for c in warnings_:
        assert issubclass(c, _errors.PlasticInferWarning), c
    # Bad-input errors stay ValueErrors, so `except ValueError` in user code keeps working.
    for c in (pi.DataError, pi.ModelError, pi.data.SchemaError, pi.data.FileFormatError, pi.data.DatasetError, pi.compare.ComparisonError,
              pi.discovery.DiscoveryError, pi.bayes.PriorError):
        assert issubclass(c, ValueError), c
    assert issubclass(pi.bayes.SamplingError, RuntimeError) and issubclass(pi.FitDivergedError, RuntimeError)


def test_public_names_are_the_one_definition():
    assert pi.bayes.PosteriorWarning is _errors.PosteriorWarning
    assert pi.bayes.SamplingError is _errors.SamplingError
    assert pi.compare.ComparisonError is _errors.ComparisonError
    assert pi.discovery.DiscoveryError is _errors.DiscoveryError
    assert pi.data.SchemaError is _errors.SchemaError


def test_formerly_bare_raises_are_library_errors():
    with pytest.raises(pi.ModelError, match="lapse"):
        pi.BernoulliChoice(lapse=1.5)
