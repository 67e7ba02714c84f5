"""Self-describing results files: models and fit results ↔ xarray/netCDF.

A model is stored as its array leaves, each under the name of its path in the model
(``rule.coeffs``, ``initial_weights.w``, ``observation.log_sigma``), plus its structure
(classes and static fields) as JSON in the attrs, from which :func:`rebuild_model`
reconstructs it without a template. See ``docs/core.md`` ("Results files").
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ._errors import DataError, FileFormatError, PlasticInferWarning, warn
from ._io import read_netcdf, write_netcdf
from ._rules import Monomial, TaylorRule

FORMAT = "plasticinfer-fit/2"
FORMATS = {
    "fit": (FORMAT, "fit result", "FitResult.save"),
    "search": ("plasticinfer-search/1", "search result", "discovery.SearchResult.save"),
    "metalearn": ("plasticinfer-metalearn/1", "meta-learning result", "metalearn.MetaLearnResult.save"),
    "calibration": ("plasticinfer-calibration/1", "calibration result", "bayes.CalibrationResult.save"),
    "sbc": ("plasticinfer-sbc/1", "SBC result", "discovery.SBCResult.save"),
    "npe": ("plasticinfer-npe/1", "NPE result", "discovery.NPEResult.save"),
    "families": ("plasticinfer-families/1", "rule-families result", "discovery.FamiliesResult.save"),
}
"""Every results file kind: its format tag, what it holds, and the method that writes it."""
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_TRUSTED_MODULES = ("plasticinfer", "equinox", "jax", "numpy")


def strip_addresses(text: str) -> str:
    """``repr`` text without memory addresses, so the same object writes the same bytes every run."""
    return _ADDRESS.sub("", text)


def to_json(value) -> str:
    """Deterministic JSON (sorted keys; objects by their address-free ``str``)."""
    return strip_addresses(json.dumps(value, sort_keys=True, default=lambda o: strip_addresses(str(o))))


# --------------------------------------------------------------------------------------
# Names of a model's parameters
# --------------------------------------------------------------------------------------


def _key_name(k) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def named_leaves(model) -> dict[str, Any]:
    """Every array leaf of ``model`` by the dotted path to it (``"initial_weights.w"``), in flattening order."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(model)[0]:
        if eqx.is_array(leaf):
            out[".".join(_key_name(k) for k in path)] = leaf
    return out


def taylor_rules(model) -> dict[str, TaylorRule]:
    rule = getattr(model, "rule", model)
    if isinstance(rule, Mapping):
        return {k: v for k, v in rule.items() if isinstance(v, TaylorRule)}
    return {"rule": rule} if isinstance(rule, TaylorRule) else {}


def term_names(model) -> list[str]:
    """The coefficient names of every Taylor rule (``"w:x*y"`` for the rule of weight ``w`` in a dict of rules)."""
    return [("" if key == "rule" else f"{key}:") + n for key, r in taylor_rules(model).items() for n in r.names]


def coefficient_rows(model, independent: bool) -> list[dict[str, float]]:
    """Taylor coefficients by name: one row, or one per subject of an independent fit."""
    rules = taylor_rules(model)
    if not rules:
        return []
    n = next(iter(rules.values())).coeffs.shape[0] if independent else 1
    rows = []
    for s in range(n):
        row = {}
        for key, r in rules.items():
            coeffs = np.asarray(r.coeffs[s] if independent else r.coeffs)
            prefix = "" if key == "rule" else f"{key}:"
            row.update({prefix + name: float(c) for name, c in zip(r.names, coeffs)})
        rows.append(row)
    return rows


def _dims(name: str, ndim: int, lead: list[str], single_rule: bool) -> list[str]:
    rest = ndim - len(lead)
    if name == "rule.coeffs" and single_rule and rest == 1:
        return lead + ["term"]
    if name.startswith("initial_weights.") and rest >= 1:
        return lead + ["trajectory"] + [f"{name}.dim{k}" for k in range(1, rest)]
    return lead + [f"{name}.dim{k}" for k in range(rest)]


def model_variables(model, *, prefix: str = "", lead: list[str] = ()) -> dict[str, xr.DataArray]:
    """The model's array leaves as DataArrays named by path; ``lead`` names leading batch axes."""
    single = "rule" in taylor_rules(model)
    return {
        prefix + name: xr.DataArray(np.asarray(leaf), dims=_dims(name, np.ndim(leaf), list(lead), single))
        for name, leaf in named_leaves(model).items()
    }


# --------------------------------------------------------------------------------------
# Structure (classes and static fields) as JSON, and back
# --------------------------------------------------------------------------------------


def _qualified(obj) -> str | None:
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qual or "<" in qual:
        return None
    try:
        if _resolve(f"{module}:{qual}") is obj:
            return f"{module}:{qual}"
    except Exception:  # noqa: BLE001 - unresolvable objects are recorded as such
        pass
    return None


def _resolve(name: str):
    module, qual = name.split(":")
    if not module.split(".")[0] in _TRUSTED_MODULES:
        raise DataError(f"refusing to import {module!r} named in a results file (only {_TRUSTED_MODULES})")
    obj = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def _module_constant(obj) -> str | None:
    """``module:NAME`` when ``obj`` is a module-level constant of its class's (trusted) module, e.g. a named
    term of the meta-learning pool; such objects are stored by name, not by content (their formula is code)."""
    module = getattr(type(obj), "__module__", "") or ""
    if module.split(".")[0] not in _TRUSTED_MODULES or module not in sys.modules:
        return None
    name = next((k for k, v in vars(sys.modules[module]).items() if v is obj and not k.startswith("__")), None)
    return f"{module}:{name}" if name else None


def encode_structure(obj, path: str = "", arrays: dict | None = None):
    """A JSON-able description of ``obj``: modules by class and fields, arrays by their leaf name.

    With ``arrays`` (a dict to fill; see :func:`record_dataset`) every array is also collected under its
    leaf name, NumPy arrays are marked to come back as NumPy arrays, plain dataclasses (records such as
    a predictive check) are described by class and fields like modules, and dicts keep their order.
    """
    join = (lambda k: f"{path}.{k}" if path else str(k))  # noqa: E731
    enc = (lambda v, k: encode_structure(v, join(k), arrays))  # noqa: E731
    if eqx.is_array(obj):  # the shape too: a file edited to another shape is refused when it is read (rebuild)
        if arrays is None:
            return {"array": path, "shape": list(np.shape(obj))}
        arrays[path] = np.asarray(obj)
        return {"numpy" if isinstance(obj, (np.ndarray, np.generic)) else "array": path, "shape": list(np.shape(obj))}
    if isinstance(obj, eqx.Module):
        name = _qualified(type(obj))
        fields = {f.name: enc(getattr(obj, f.name), f.name) for f in dataclasses.fields(obj)}
        return {"module": name or type(obj).__qualname__, "fields": fields}
    if isinstance(obj, Monomial):
        return {"monomial": obj.name}
    if isinstance(obj, Mapping):
        if arrays is None:
            return {"dict": {str(k): enc(v, k) for k, v in obj.items()}}
        # a record keeps its order (JSON sorts keys) and its keys' types; leaves are named by position
        return {"items": [[encode_structure(k), enc(v, i)] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (tuple, list)):
        return {type(obj).__name__: [enc(v, i) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return {"value": obj.item()}
    constant = _module_constant(obj)
    if constant:
        return {"constant": constant}
    if arrays is not None and dataclasses.is_dataclass(obj) and not isinstance(obj, type) and _qualified(type(obj)):
        fields = {f.name: enc(getattr(obj, f.name), f.name) for f in dataclasses.fields(obj)}
        return {"module": _qualified(type(obj)), "fields": fields}
    if callable(obj):
        name = _qualified(obj)
        return {"function": name} if name else {"unresolvable": strip_addresses(repr(obj))}
    return {"unresolvable": strip_addresses(repr(obj))}


def record_dataset(obj, name: str) -> xr.Dataset:
    """Any record of results (dataclasses, modules, dicts, arrays, numbers, strings) as one Dataset: its arrays as
    variables ``name.<path>`` (dims ``name.<path>.dim<k>``) and its structure as the attribute ``name_structure``;
    :func:`read_pytree` rebuilds it without a template, arrays of the same type and dtype."""
    arrays: dict[str, np.ndarray] = {}
    structure = encode_structure(obj, "", arrays)
    variables = {f"{name}.{k}": xr.DataArray(v, dims=[f"{name}.{k}.dim{i}" for i in range(v.ndim)]) for k, v in arrays.items()}
    return xr.Dataset(variables, attrs={f"{name}_structure": to_json(structure)})


def nest(ds: xr.Dataset, prefix: str) -> xr.Dataset:
    """``ds`` with every variable, dimension and attribute renamed ``prefix.<name>``, to sit inside another
    result's file (a family study's NPE result); :func:`unnest` takes it back out."""
    dims = {d: f"{prefix}.{d}" for d in ds.dims if d not in ds.variables}
    out = ds.rename({**{k: f"{prefix}.{k}" for k in ds.variables}, **dims})
    out.attrs = {f"{prefix}.{k}": v for k, v in ds.attrs.items()}
    return out


def unnest(ds: xr.Dataset, prefix: str) -> xr.Dataset:
    """The Dataset that :func:`nest` put under ``prefix`` (empty if there is none)."""
    p = f"{prefix}."
    keep = [str(k) for k in ds.variables if str(k).startswith(p)]
    sub = ds.drop_vars([k for k in ds.variables if str(k) not in keep])
    dims = {d: d[len(p):] for d in map(str, sub.dims) if d.startswith(p) and d not in keep}
    sub = sub.rename({**{k: k[len(p):] for k in keep}, **dims})
    sub.attrs = {k[len(p):]: v for k, v in ds.attrs.items() if k.startswith(p)}
    return sub


def describe(obj) -> str:
    """A short deterministic description of a module and its static settings: ``FeedForward(n_pre=4, n_post=2, ...)``."""
    if isinstance(obj, Mapping):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in obj.items()) + "}"
    if not isinstance(obj, eqx.Module):
        return strip_addresses(repr(obj))
    parts = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if eqx.is_array(v) or isinstance(v, eqx.Module):
            continue
        if isinstance(v, tuple) and v and isinstance(v[0], Monomial):
            continue  # Taylor terms are listed separately
        if callable(v) and not isinstance(v, type):
            v = getattr(v, "__name__", type(v).__name__)
        parts.append(f"{f.name}={v}")
    return f"{type(obj).__name__}({', '.join(parts)})"


#: what a message about a damaged or hand-edited results file tells the user to do
RECREATE = "Re-create it (re-run, or save the result again) or restore it from a copy."


def rebuild(structure, arrays: Mapping[str, np.ndarray], source="the file", lead: int | None = 0):
    """Inverse of :func:`encode_structure`; ``arrays`` maps leaf names to values, with ``lead`` leading axes more
    than the structure's (``None``: shapes checked by the caller). An array whose shape is not the one the structure
    records (files written since shapes were recorded) is refused: a hand-edited file would otherwise load as another
    model."""
    kind = "module" if "module" in structure else next(iter(structure))
    spec = structure[kind]
    if kind in ("array", "numpy"):
        if spec not in arrays:
            raise DataError(f"{source}: parameter {spec!r} is described but not stored")
        value = np.asarray(arrays[spec])
        shape = structure.get("shape")
        if shape is not None and lead is not None and (value.ndim != lead + len(shape) or value.shape[lead:] != tuple(shape)):
            raise FileFormatError(
                f"{source}: parameter {spec!r} is stored with shape {value.shape[lead:]}, but the model the file describes "
                f"needs {tuple(shape)}; the file was edited or damaged. {RECREATE}"
            )
        if kind == "numpy":
            return value
        if value.dtype == np.float64 and not jax.config.jax_enable_x64:
            warn(
                f"{source} stores float64 values and JAX runs in float32 in this session: they load rounded to float32 "
                "(about 1e-7 relative). Call jax.config.update('jax_enable_x64', True) before loading to keep them exact",
                PlasticInferWarning,
            )
        return jnp.asarray(value)
    if kind == "module":
        if ":" not in spec:
            raise DataError(f"{source}: class {spec!r} cannot be imported; load with like= a model built as the fitted one")
        cls = _resolve(spec)
        obj = object.__new__(cls)
        for name, sub in structure["fields"].items():
            object.__setattr__(obj, name, rebuild(sub, arrays, source, lead))
        return obj
    if kind == "monomial":
        return Monomial.parse(spec)
    if kind == "dict":
        return {k: rebuild(v, arrays, source, lead) for k, v in spec.items()}
    if kind == "items":
        return {rebuild(k, arrays, source, lead): rebuild(v, arrays, source, lead) for k, v in spec}
    if kind in ("tuple", "list"):
        items = [rebuild(v, arrays, source, lead) for v in spec]
        return tuple(items) if kind == "tuple" else items
    if kind == "value":
        return spec
    if kind in ("function", "constant"):
        return _resolve(spec)
    raise DataError(
        f"{source}: the model holds {spec}, which a file cannot describe (a lambda or local object); "
        "load with like= a model built as the fitted one"
    )


def model_attrs(model) -> dict[str, str]:
    """The model configuration, readable (rule, terms, learning rate, network, observation) and as JSON."""
    rules = taylor_rules(model)
    attrs = {
        "rule": describe(model.rule),
        "network": describe(model.network),
        "observation": describe(model.observation),
        "model_structure": to_json(encode_structure(model)),
    }
    if rules:
        attrs["rule_terms"] = ", ".join(term_names(model))
        attrs["rule_variables"] = ", ".join(
            sorted({v for r in rules.values() for t in r.terms for v in "xywr" if getattr(t, v)})
        )
        attrs["learning_rate"] = to_json({k: r.learning_rate for k, r in rules.items()})
    return attrs


# --------------------------------------------------------------------------------------
# Results files of every kind: one writer, one reader that refuses any other kind
# --------------------------------------------------------------------------------------


def duration(seconds: float, spec: str = ".1f") -> str:
    """``"12.3 s"`` for a run timed in this session; a loaded result's wall time is NaN (results files hold no
    wall times, so that the same run saves the same bytes), shown as ``"wall time not saved"``."""
    return f"{seconds:{spec}} s" if np.isfinite(seconds) else "wall time not saved"


def result_attrs(kind: str) -> dict[str, str]:
    """The attributes that mark a file as a plasticinfer result of ``kind`` (a key of :data:`FORMATS`)."""
    return {"created_by": "plasticinfer", "format": FORMATS[kind][0]}


def tagged(ds: xr.Dataset, kind: str, annotations: xr.Dataset | None = None) -> xr.Dataset:
    """A result's Dataset with its format tag and, merged in, ``annotations``: a report's extra variables and
    attributes (e.g. normalised coefficients), which the result's reader ignores. An annotation may not reuse
    a name the result stores."""
    ds = ds.copy()
    if annotations is not None:
        clash = sorted(set(map(str, annotations.data_vars)) & set(map(str, ds.variables)))
        clash += sorted(set(annotations.attrs) & set(ds.attrs))
        if clash:
            raise DataError(f"report annotations reuse names the {FORMATS[kind][1]} stores: {clash}; rename them")
        attrs = dict(ds.attrs)
        ds = xr.merge([ds, annotations], compat="no_conflicts", combine_attrs="drop")
        ds.attrs.update(attrs, **annotations.attrs)
    ds.attrs.update(result_attrs(kind))
    return ds


@contextlib.contextmanager
def reading(path, noun: str):
    """Reading the contents of a results file: a variable or attribute that is missing or unreadable (a file
    damaged or cut short, or edited by hand) is one :class:`FileFormatError` naming the file and what is
    missing, not a bare ``KeyError``, ``JSONDecodeError`` or pandas parser error. Only those are caught: other
    errors (the library's own, or a library's API that changed) pass through as they are, except a ValueError (a stored
    text that does not convert to the number it should be)."""
    import pandas as pd

    advice = RECREATE
    try:
        yield
    except DataError:
        raise
    except KeyError as e:
        text = str(e.args[0]) if e.args else ""
        named = re.search(r"No variable named '([^']+)'", text)
        what = f"variable {named.group(1)!r}" if named else (text if " " in text else repr(text))
        raise FileFormatError(f"{path}: a damaged or incomplete {noun}: {what} is missing. {advice}") from None
    except (json.JSONDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, pd.errors.IntCastingNaNError,
            UnicodeDecodeError) as e:
        raise FileFormatError(f"{path}: a damaged or incomplete {noun}: {type(e).__name__}: {e}. {advice}") from None
    except ValueError as e:  # a stored text that does not convert (int("n/a"), float("abc")): not the library's own
        raise FileFormatError(f"{path}: a damaged or incomplete {noun}: a stored value does not convert ({e}). {advice}") from None


def read_result(path, kind: str) -> xr.Dataset:
    """Read a file of ``kind`` (a :func:`tagged` Dataset written by ``write_netcdf``); any other file is refused with one
    :class:`DataError` that names the file, the kind it holds and the method that writes this kind."""
    return check_kind(read_netcdf(path), path, kind)


def check_kind(ds: xr.Dataset, path, kind: str) -> xr.Dataset:
    """``ds`` (read from ``path``) if it holds a result of ``kind``; else the :class:`DataError` of :func:`read_result`."""
    fmt, noun, writer = FORMATS[kind]
    if ds.attrs.get("created_by") == "plasticinfer" and ds.attrs.get("format") == fmt:
        return ds
    raise DataError(
        f"{path}: not a plasticinfer {noun}: the file holds {what_file_holds(ds, path)}. This reads {fmt!r} files, "
        f"written by {writer}; open the file with the load of its own kind."
    )


def what_file_holds(ds: xr.Dataset | None, path) -> str:
    """What a results file that is not the kind wanted holds, by its format tag (or its groups: a posterior)."""
    found_fmt = ds.attrs.get("format") if ds is not None else None
    found = next((f"a plasticinfer {n} ({f!r}, written by {w})" for f, n, w in FORMATS.values() if f == found_fmt), None)
    if found is not None:
        return found
    if found_fmt:
        return f"format {found_fmt!r}"
    try:
        import h5py

        with h5py.File(path, "r") as f:
            groups = set(f.keys())
    except (OSError, ValueError):
        groups = set()
    if "posterior" in groups:
        return "an ArviZ posterior (written by bayes.Posterior.save; read it with pi.bayes.Posterior.load(path, like=model))"
    return "no plasticinfer format tag (not written by a plasticinfer save)"


def pytree_variables(tree, name: str, lead: list[str] = ()) -> tuple[dict[str, xr.DataArray], dict[str, str]]:
    """A pytree of modules (rules, flows, priors) as variables ``name.<path>`` and its structure as the attribute
    ``name_structure``; :func:`read_pytree` rebuilds it without a template. ``lead`` names leading batch axes."""
    return model_variables(tree, prefix=f"{name}.", lead=lead), {f"{name}_structure": to_json(encode_structure(tree))}


def read_pytree(ds: xr.Dataset, name: str, source="the file"):
    """Inverse of :func:`pytree_variables`."""
    prefix = f"{name}."
    arrays = {str(k)[len(prefix):]: ds[k].values for k in ds.data_vars if str(k).startswith(prefix)}
    return rebuild(json.loads(ds.attrs[f"{name}_structure"]), arrays, source)


# --------------------------------------------------------------------------------------
# Checking a stored model against a template
# --------------------------------------------------------------------------------------


def check_like(path, ds: xr.Dataset, like, names: list[str], *, lead: int, prefix: str = "") -> None:
    """Refuse a template whose term names or parameter shapes differ from those stored, listing every difference."""
    problems = like_differences(ds, like, names, lead=lead, prefix=prefix)
    if problems:
        raise DataError(
            f"{path}: the stored model does not match the model given as like=:\n  - " + "\n  - ".join(problems)
            + "\nPass like= a model built exactly as the one that was fitted, or omit like= to rebuild it from the file."
        )


def like_differences(ds: xr.Dataset, like, names: list[str], *, lead: int, prefix: str = "") -> list[str]:
    """How a template differs from the model stored in ``ds`` (terms, parameter shapes, configuration): one line each."""
    problems = []
    stored_terms = [str(t) for t in ds["term"].values] if "term" in ds.coords else []
    wanted_terms = term_names(like)
    by_rule = lambda names: sorted(names, key=lambda n: n.split(":")[0] if ":" in n else "")  # noqa: E731
    if by_rule(stored_terms) != by_rule(wanted_terms):  # the order of a dict of rules is not the model's (JAX sorts it)
        problems.append(f"terms: file has {len(stored_terms)} {stored_terms[:8]}{'…' if len(stored_terms) > 8 else ''}, "
                        f"like= has {len(wanted_terms)} {wanted_terms[:8]}{'…' if len(wanted_terms) > 8 else ''}")
    expected = {n: tuple(np.shape(v)) for n, v in named_leaves(like).items()}
    for n in sorted(set(names) - set(expected)):
        problems.append(f"parameter {n!r} is in the file but not in like=")
    for n in sorted(set(expected) - set(names)):
        problems.append(f"parameter {n!r} of like= is not in the file")
    for n in names:
        if n in expected:
            shape = tuple(ds[prefix + n].shape[lead:])
            if shape != expected[n]:
                problems.append(f"parameter {n!r}: file has shape {shape}, like= has {expected[n]}")
    # the configuration that no array records (learning rate, activation, noise settings), compared as structure:
    # dict order, tuple vs list and 1 vs 1.0 do not matter
    if "model_structure" in ds.attrs:
        stored = json.loads(ds.attrs["model_structure"]).get("fields", {})
        given = json.loads(to_json(encode_structure(like))).get("fields", {})
        for part in ("rule", "network", "observation"):
            if part in stored and part in given and _configuration(stored[part]) != _configuration(given[part]):
                problems.append(
                    f"{part}: file has {_setting(ds.attrs.get(part, '?'))}, like= has {_setting(describe(getattr(like, part)))}"
                )
    return problems


# What a template may differ in: the terms (compared by name above) and how a rule is contracted or
# differentiated (a choice of computation, not of model).
_NOT_COMPARED = ("terms", "contraction", "derivative")


def _configuration(structure):
    """The static configuration in an encoded structure: arrays as placeholders, tuples as lists, no terms."""
    if isinstance(structure, dict):
        if "array" in structure or "numpy" in structure:
            return "array"
        if "tuple" in structure or "list" in structure:
            return [_configuration(v) for v in structure.get("tuple", structure.get("list"))]
        return {k: _configuration(v) for k, v in structure.items() if k not in _NOT_COMPARED}
    if isinstance(structure, list):
        return [_configuration(v) for v in structure]
    return structure


def _setting(text) -> str:
    """A module's description without the computation choices (see ``_NOT_COMPARED``)."""
    return re.sub(r"(, )?\b(contraction|derivative)=[^,)]*", "", str(text))


def fill_like(like, ds: xr.Dataset, prefix: str, *, cast: bool = True):
    """``like`` with every array leaf replaced by the stored one (dtype of the template; of the file if not ``cast``)."""
    names = list(named_leaves(like))
    it = iter(names)
    leaves, treedef = jax.tree_util.tree_flatten(like)
    out = []
    for leaf in leaves:
        if eqx.is_array(leaf):
            out.append(jnp.asarray(ds[prefix + next(it)].values, dtype=leaf.dtype if cast else None))
        else:
            out.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, out)


# --------------------------------------------------------------------------------------
# Fit results
# --------------------------------------------------------------------------------------


def fit_to_dataset(result) -> xr.Dataset:
    """Coefficients by term, loss histories, diagnostics and every model parameter by name, as one Dataset."""
    ds = xr.Dataset()
    rows = coefficient_rows(result.model, result.independent)
    if rows:
        names = list(rows[0])
        values = np.array([[r[n] for n in names] for r in rows])
        if result.independent:
            ds["coefficient"] = xr.DataArray(values, dims=["subject", "term"], coords={"term": names})
        else:
            ds["coefficient"] = xr.DataArray(values[0], dims=["term"], coords={"term": names})
    lead = ["subject", "restart"] if result.independent else ["restart"]
    if result.independent and result.subjects is not None:
        ds = ds.assign_coords(subject=("subject", [str(v) for v in result.subjects]))
    ds["loss"] = xr.DataArray(np.asarray(result.loss_history), dims=lead + ["step"])
    if result.validation_history is not None:
        ds["validation_loss"] = xr.DataArray(result.validation_history, dims=lead + ["evaluation"])
        ds = ds.assign_coords(evaluation_step=("evaluation", np.asarray(result.validation_steps)))
    ds["diverged_at"] = xr.DataArray(np.asarray(result.diverged_at), dims=lead)
    ds["best_restart"] = xr.DataArray(np.asarray(result.best_restart), dims=lead[:-1])
    if result.independent and result.subject_converged is not None:
        ds["subject_converged"] = xr.DataArray(np.asarray(result.subject_converged, np.int8), dims=lead[:-1])
    model_lead = lead[:-1]
    ds = ds.assign(model_variables(result.model, lead=model_lead))
    ds = ds.assign(model_variables(result.restarts, prefix="restarts.", lead=lead))
    ds.attrs.update(
        {
            "created_by": "plasticinfer",
            "format": FORMAT,
            "equation": result.equation() if not result.independent else "per subject: see the coefficient variable",
            "independent": int(result.independent),
            "stopped_early": int(result.stopped_early),
            "interrupted": int(result.interrupted),
            "converged": int(result.converged),
            "convergence_message": result.convergence_message,
            "steps_run": int(result.steps_run),
            "settings": to_json(result.settings),
            "parameters": to_json(list(named_leaves(result.model))),
            **model_attrs(result.model),
        }
    )
    return ds


def save_fit(result, path) -> Path:
    return write_netcdf(fit_to_dataset(result), path)


def load_fit_fields(path, like=None) -> dict:
    """The fields of a saved :class:`FitResult` (see ``FitResult.load``)."""
    path = Path(path)
    ds = read_netcdf(path)
    if ds.attrs.get("format") in {f for f, _, _ in FORMATS.values()} - {FORMAT}:
        check_kind(ds, path, "fit")  # another kind of result: say which
    if ds.attrs.get("created_by") != "plasticinfer" or ("loss" not in ds and ds.attrs.get("format") != FORMAT):
        raise DataError(
            f"{path}: not a plasticinfer fit result: the file holds {what_file_holds(ds, path)}; FitResult.load reads "
            "files written by FitResult.save"
        )
    if ds.attrs.get("format") != FORMAT:
        raise DataError(
            f"{path}: written in results format {ds.attrs.get('format', 'plasticinfer-fit/1 (param_000 leaves)')!r}; "
            f"this version reads {FORMAT!r}. Re-run the fit to rewrite it."
        )
    with reading(path, "fit result"):
        return _fit_fields(path, ds, like)


def flag(path, ds: xr.Dataset, name: str, default: int | None = None) -> bool:
    """A True/False attribute of a results file (stored as 0 or 1); anything else is a damaged file."""
    value = ds.attrs[name] if default is None else ds.attrs.get(name, default)
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    shown = value.item() if isinstance(value, np.generic) else value
    raise FileFormatError(f"{path}: attribute {name!r} is {shown!r}, not 0 or 1: the file was edited or damaged. "
                          + RECREATE)


def _check_restarts(path, ds: xr.Dataset, names: list[str], independent: bool) -> None:
    """Every restart's parameter has the model's shape (the restart axis: first, or after the subject axis of an
    independent fit); the model's own shapes are checked against the file's structure or the template."""
    axis = 1 if independent else 0
    for n in names:
        r, m = ds["restarts." + n].shape, ds[n].shape
        if len(r) != len(m) + 1 or r[:axis] + r[axis + 1:] != m:
            raise FileFormatError(
                f"{path}: parameter 'restarts.{n}' is stored with shape {r}, which is not the model's {m} with a restart "
                f"axis; the file was edited or damaged. {RECREATE}"
            )


def _check_labels(path, ds: xr.Dataset, model, independent: bool) -> None:
    """The file's readable coefficients (``coefficient`` by ``term``) say what its parameters say: an edit to one and
    not the other (a term renamed, a value changed) would load as a model the file does not show."""
    rows = coefficient_rows(model, independent)
    if not rows or "coefficient" not in ds:
        return
    names, labels = list(rows[0]), [str(t) for t in ds["term"].values]
    values = np.array([[row[n] for n in names] for row in rows])
    stored = np.asarray(ds["coefficient"].values, float).reshape(values.shape) if labels == names else None
    if stored is None or not np.allclose(stored, values, rtol=1e-6, atol=0, equal_nan=True):
        what = (f"terms {labels}, while its parameters are those of {names}" if labels != names
                else "coefficient values that differ from its parameters")
        raise FileFormatError(
            f"{path}: the file labels its coefficients with {what}; it was edited or damaged. {RECREATE}"
        )


def _fit_fields(path, ds: xr.Dataset, like) -> dict:
    independent = flag(path, ds, "independent")
    names = json.loads(ds.attrs["parameters"])
    if like is not None:
        if independent:
            like = like.split_trajectories()
        check_like(path, ds, like, names, lead=0)
        _check_restarts(path, ds, names, independent)
        model = fill_like(like, ds, "")
        restarts = fill_like(like, ds, "restarts.")
    else:
        structure = json.loads(ds.attrs["model_structure"])
        model = rebuild(structure, {n: ds[n].values for n in names}, path)
        _check_restarts(path, ds, names, independent)
        restarts = rebuild(structure, {n: ds["restarts." + n].values for n in names}, path, lead=None)
    _check_labels(path, ds, model, independent)
    return dict(
        model=model,
        restarts=restarts,
        loss_history=ds["loss"].values,
        validation_history=ds["validation_loss"].values if "validation_loss" in ds else None,
        validation_steps=ds["evaluation_step"].values if "evaluation_step" in ds else np.zeros(0, int),
        best_restart=ds["best_restart"].values,
        diverged_at=ds["diverged_at"].values,
        stopped_early=flag(path, ds, "stopped_early"),
        steps_run=int(ds.attrs["steps_run"]),
        independent=independent,
        settings=json.loads(ds.attrs.get("settings", "{}")),
        interrupted=flag(path, ds, "interrupted", 0),
        converged=flag(path, ds, "converged", 1),
        convergence_message=str(ds.attrs.get("convergence_message", "")),
        subjects=tuple(str(v) for v in ds["subject"].values) if independent and "subject" in ds.coords else None,
        subject_converged=ds["subject_converged"].values.astype(bool) if "subject_converged" in ds else None,
    )
