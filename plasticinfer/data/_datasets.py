"""Named datasets: descriptions (TOML beside ``plasticinfer/datasets/__init__.py``), location,
checksums, optional download, and the builders that turn the files into the schema.

Where the files are looked for, in order: the ``path`` argument (only there, when given); the
``PLASTICINFER_DATA_DIR`` environment variable; ``../shared/data`` relative to the working
directory; ``../shared/data`` relative to the repository this package sits in; the download cache
(``$XDG_CACHE_HOME/plasticinfer`` or ``~/.cache/plasticinfer``). Each of these may be the folder
holding the dataset folders, or the dataset folder itself.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import tempfile
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ._combine import concat_subjects
from .._errors import DataError, DatasetError
from ._matlab import load_mat
from ._schema import behaviour_dataset

ENV_VAR = "PLASTICINFER_DATA_DIR"
_PACKAGE = "plasticinfer.datasets"


@dataclass(frozen=True)
class DataFile:
    """One file of a named dataset."""

    path: str  # relative to the dataset folder
    sha256: str
    source_path: str = ""  # relative to the source repository; "" = not downloadable
    required: bool = True


@dataclass(frozen=True)
class DatasetInfo:
    """The description of a named dataset (from its TOML file)."""

    name: str
    title: str
    kind: str
    folder: str
    description: str
    license: str
    license_text: str
    citation: str
    source_repository: str
    source_commit: str
    base_url: str
    provenance: str
    files: tuple[DataFile, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def url(self, f: DataFile) -> str:
        """Download address of ``f`` ("" when the file is not in the public source)."""
        return self.base_url + f.source_path if f.source_path else ""


def names() -> list[str]:
    """Names of the datasets plasticinfer knows."""
    return sorted(p.name.removesuffix(".toml") for p in resources.files(_PACKAGE).iterdir()
                  if p.name.endswith(".toml"))


def info(name: str) -> DatasetInfo:
    """The description of dataset ``name`` (licence, citation, provenance, files and checksums)."""
    if name not in names():
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {names()}. See `plasticinfer datasets list`.")
    raw = tomllib.loads(resources.files(_PACKAGE).joinpath(f"{name}.toml").read_text(encoding="utf-8"))
    keys = ("name", "title", "kind", "folder", "description", "license", "license_text", "citation",
            "source_repository", "source_commit", "base_url", "provenance")
    files = tuple(DataFile(**f) for f in raw.get("files", []))
    text = {k: str(raw[k]).strip() for k in keys}
    extra = {k: v for k, v in raw.items() if k not in keys and k != "files"}
    return DatasetInfo(**text, files=files, extra=extra)


def cache_dir() -> Path:
    """Default download folder: ``$XDG_CACHE_HOME/plasticinfer`` or ``~/.cache/plasticinfer``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "plasticinfer"


def candidate_dirs(path: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for dataset folders, in order (only ``path`` when it is given)."""
    if path is not None:
        return [Path(path)]
    out = []
    if os.environ.get(ENV_VAR):
        out.append(Path(os.environ[ENV_VAR]))
    repo = Path(__file__).resolve().parents[2]
    out += [Path.cwd().parent / "shared" / "data", repo.parent / "shared" / "data", cache_dir()]
    return list(dict.fromkeys(out))


def _has_files(folder: Path, ds: DatasetInfo) -> bool:
    first = next(f for f in ds.files if f.required)
    return (folder / first.path).is_file()


def locate(name: str, path: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding dataset ``name``'s files.

    Raises:
        DatasetError: not found; the message lists every place searched and what to do.
    """
    ds = info(name)
    tried = []
    for base in candidate_dirs(path):
        for folder in (base / ds.folder, base):
            tried.append(str(folder))
            if _has_files(folder, ds):
                return folder
    raise DatasetError(
        f"dataset {name!r} not found; looked in: {', '.join(tried)}. Pass path='<folder holding "
        f"{ds.folder}>', set {ENV_VAR}, or call plasticinfer.datasets.load({name!r}, download=True) "
        f"to fetch it from {ds.source_repository} (commit {ds.source_commit[:10]})."
    )


def verify(name: str, folder: str | os.PathLike[str]) -> None:
    """Check every file of dataset ``name`` in ``folder`` against its SHA-256.

    Required files must be present; optional ones are checked when present.
    """
    ds = info(name)
    folder = Path(folder)
    for f in ds.files:
        p = folder / f.path
        if not p.is_file():
            if f.required:
                raise DatasetError(
                    f"dataset {name!r}: file {str(p)!r} is missing. Restore it, or download the dataset again "
                    f"(plasticinfer.datasets.download({name!r}))."
                )
            continue
        found = hashlib.sha256(p.read_bytes()).hexdigest()
        if found != f.sha256:
            raise DatasetError(
                f"dataset {name!r}: file {str(p)!r} has SHA-256 {found}, expected {f.sha256}. The file is "
                "modified or corrupt: restore it, or download the dataset again (or pass verify=False at your "
                "own risk)."
            )


def _urlopen(url: str, timeout: float = 60.0) -> Any:
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - https URLs from our own TOML


def download(name: str, target: str | os.PathLike[str] | None = None) -> Path:
    """Download dataset ``name`` from its public source, checking every file's SHA-256.

    Files go to ``target/<folder>`` (default target: ``$PLASTICINFER_DATA_DIR`` or the cache
    folder). All files are fetched into a temporary folder first and moved into place only once
    every checksum matched, so a failed download leaves nothing behind.

    Returns:
        The dataset folder.
    """
    ds = info(name)
    base = Path(target) if target is not None else Path(os.environ.get(ENV_VAR) or cache_dir())
    dest = base / ds.folder
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{ds.folder}.", dir=base))
    try:
        fetched = []
        for f in ds.files:
            if not f.source_path:
                continue
            url = ds.url(f)
            try:
                with _urlopen(url) as response:
                    data = response.read()
            except Exception as e:  # URLError, HTTPError, timeouts, ...
                raise DatasetError(
                    f"dataset {name!r}: could not download {url}: {type(e).__name__}: {e}. Check the network, "
                    f"or copy the files by hand into {str(dest)!r}."
                ) from e
            found = hashlib.sha256(data).hexdigest()
            if found != f.sha256:
                raise DatasetError(
                    f"dataset {name!r}: {url} has SHA-256 {found}, expected {f.sha256}; nothing was written. "
                    "The source may have changed: report it to the plasticinfer developers."
                )
            out = staging / f.path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            fetched.append(f.path)
        for rel in fetched:
            final = dest / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, final)
        (dest / "LICENSE").write_text(ds.license_text + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def load(
    name: str,
    *,
    path: str | os.PathLike[str] | None = None,
    download: bool = False,
    verify: bool = True,
    **options: Any,
) -> xr.Dataset:
    """Load named dataset ``name`` into the schema, with licence, citation and provenance in attrs.

    Args:
        name: see `names` (``plasticinfer datasets list``).
        path: folder holding the dataset folder (or the dataset folder itself); default: search
            (see the module docs).
        download: when the files are not found, fetch them from the public source.
        verify: check each file's SHA-256 before reading it.
        **options: dataset-specific options: ``rajagopalan2023``: ``include_incomplete=True``
            for all 21 flies (default: the 18 complete sessions); ``mohanta2022``:
            ``subset="training"`` or ``"test"`` (default ``"all"``).
    """
    meta = info(name)
    try:
        folder = locate(name, path)
    except DatasetError:
        if not download:
            raise
        folder = _download(name, path)
    if verify:
        _verify(name, folder)
    builder = _BUILDERS[name]
    try:
        inspect.signature(builder).bind(folder, meta, **options)
    except TypeError:
        takes = [p for p in list(inspect.signature(builder).parameters)[2:]]
        raise DatasetError(
            f"dataset {name!r} takes the options {takes or 'none'}; got {sorted(options)}. Check the spelling."
        ) from None
    try:
        ds = builder(folder, meta, **options)
    except DataError:
        raise
    except Exception as e:  # numpy/pandas on a damaged file: name the folder and what to do
        checked = "its checksums matched" if verify else "it was loaded with verify=False, so its checksums were not checked"
        raise DatasetError(
            f"dataset {meta.name!r} in {str(folder)!r} could not be read ({type(e).__name__}: {' '.join(str(e).split())}); "
            f"{checked}. Restore the original files (or download them again)."
        ) from e
    ds.attrs.update({
        "dataset": meta.name,
        "title": meta.title,
        "description": meta.description,
        "license": meta.license,
        "license_text": meta.license_text,
        "citation": meta.citation,
        "provenance": meta.provenance,
        "source": f"{meta.source_repository} (commit {meta.source_commit}); read from {folder}",
    })
    return ds


_download = download
_verify = verify


# --- builders ----------------------------------------------------------------------------------


def _rajagopalan2023(folder: Path, meta: DatasetInfo, *, include_incomplete: bool = False) -> xr.Dataset:
    log = pd.read_csv(folder / "log.csv")
    sessions = {p.parent.name: p.parent for p in folder.glob("raw/*/*/choice_order.mat")}
    ordered = list(log.sort_values("FlyID")["Session Name"])
    missing = [s for s in ordered if s not in sessions]
    if missing:
        raise DatasetError(f"dataset {meta.name!r}: log.csv names sessions without MAT files: {missing}.")
    if include_incomplete:
        ordered += sorted(s for s in sessions if s not in set(ordered))
    parts = [load_mat(sessions[s] / "choice_order.mat") for s in ordered]
    ds = concat_subjects(parts)

    p_block: dict[tuple[str, int], float] = {}
    for _, row in log.iterrows():
        for b in (1, 2, 3):
            p_block[(row["Session Name"], b)] = float(row[f"p{b}"])
    trials_csv = folder / "trials.csv"
    if trials_csv.is_file():
        table = pd.read_csv(trials_csv).groupby(["session", "block"])["p_block"].first()
        for (s, b), p in table.items():
            p_block.setdefault((str(s), int(b)), float(p))
    groups = [sessions[s].parent.name for s in ordered]
    totals = np.array([0.5 if g.endswith("Tp_0.5") else 1.0 for g in groups])
    blocks = ds["block"].values
    p2 = np.array([[p_block.get((s, int(b)), np.nan) if b > 0 else np.nan for b in row]
                   for s, row in zip(ordered, blocks)])
    p_reward = np.stack([totals[:, None] - p2, p2], axis=-1)
    fly_id = dict(zip(log["Session Name"], log["FlyID"].astype(int)))
    ds = ds.assign_coords(
        p_reward=(("subject", "trial", "option"), p_reward),
        session=("subject", np.array(ordered, dtype=object)),
        group=("subject", np.array(groups, dtype=object)),
        fly_id=("subject", np.array([fly_id.get(s, -1) for s in ordered], dtype=np.int64)),
    )
    ds.attrs.update({
        "units_reward": "1 = reward (optogenetic, Gr64f>CsChrimson) delivered, 0 = none",
        "p_reward_note": str(meta.extra.get("p_reward_note", "")).strip(),
        "subjects": "all 21 sessions" if include_incomplete else "18 complete sessions (log.csv)",
    })
    return ds


def _mohanta2022(folder: Path, meta: DatasetInfo, *, subset: str = "all") -> xr.Dataset:
    subsets = {"all": ("training", "test"), "training": ("training",), "test": ("test",)}
    if subset not in subsets:
        raise DatasetError(f"dataset {meta.name!r}: subset must be one of {sorted(subsets)}; got {subset!r}.")
    choices, rewards, ids, split, schedule = [], [], [], [], []
    for part in subsets[subset]:
        c = np.loadtxt(folder / f"{part}_choice_set.csv", delimiter=",", ndmin=2)
        r = np.loadtxt(folder / f"{part}_reward_set.csv", delimiter=",", ndmin=2)
        exp = pd.read_csv(folder / f"{part}_experiments.csv", header=None)[0].astype(str).tolist()
        if not c.shape == r.shape or c.shape[0] != len(exp):
            raise DatasetError(
                f"dataset {meta.name!r}: {part} files disagree in shape: {c.shape}, {r.shape}, {len(exp)} schedules."
            )
        choices += list(c)
        rewards += list(r)
        ids += [f"{part}_{i:03d}" for i in range(c.shape[0])]
        split += [part] * c.shape[0]
        schedule += [e.removesuffix(".csv") for e in exp]
    return behaviour_dataset(
        choices, rewards, subjects=ids, option_labels=["choice 0", "choice 1"],
        subject_coords={"split": np.array(split, dtype=object), "schedule": np.array(schedule, dtype=object)},
        attrs={"units_reward": "1 = rewarded, 0 = not rewarded"},
    )


_BUILDERS: dict[str, Callable[..., xr.Dataset]] = {
    "rajagopalan2023": _rajagopalan2023,
    "mohanta2022": _mohanta2022,
}
