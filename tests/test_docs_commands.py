"""Every `plasticinfer …` command shown in README.md and docs/cli.md runs, at a small size.

Commands are taken from fenced code blocks, run in order in one temporary folder (so `fit sim.nc`
finds the file `simulate sim.nc` wrote) through the real entry point. SIZES appends options that
shrink each command (a repeated option's last value wins); a command not covered by SIZES fails
the test, so a new example in the docs must be added here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pandas as pd
import pytest

from helpers import REPO

DOCS = [REPO / "README.md", REPO / "docs" / "cli.md"]

SIZES = {
    "demo": ["--steps", "3", "--quiet"],
    "simulate": ["--trajectories", "2", "--trials", "30", "--n-pre", "4", "--n-post", "2"],
    "fit": ["--steps", "3", "--restarts", "1", "--quiet"],
    "compare": ["--steps", "3", "--restarts", "1", "--quiet"],
    "datasets list": [],
    "datasets info": [],
    "discover pc1": ["--steps", "3", "--restarts", "1", "--n-pre", "3", "--networks", "1", "--quiet"],
}


def doc_commands() -> list[tuple[str, str]]:
    """(file name, command) for every line of a fenced block that runs `plasticinfer …`."""
    found = []
    for path in DOCS:
        blocks = re.findall(r"```[a-z]*\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)
        for block in blocks:
            for line in block.splitlines():
                part = line.split("&&")[-1].strip()
                if part.startswith("plasticinfer "):
                    found.append((path.name, part))
    return found


def _size(argv: list[str]) -> list[str]:
    for key in sorted(SIZES, key=len, reverse=True):
        if argv[: len(key.split())] == key.split():
            return argv + SIZES[key]
    raise AssertionError(f"no small size for documented command {' '.join(argv)!r}: add it to SIZES")


def test_docs_show_commands():
    commands = [c for _, c in doc_commands()]
    assert "plasticinfer demo" in commands  # README's first command
    assert any(c.startswith("plasticinfer compare") and "--map" in c and "--choice-codes" in c for c in commands)
    assert len(commands) >= 6


def test_every_documented_command_has_a_small_size():
    for _, command in doc_commands():
        _size(shlex.split(command)[1:])


def test_cli_doc_states_exit_codes():
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "| 2 | usage error" in text and "| 1 | an unexpected error" in text and "| 130 |" in text


@pytest.mark.slow
@pytest.mark.compile_bound  # measured: faster compiled unoptimised (tests/conftest.py)
def test_documented_commands_run(tmp_path):
    # the lab table of docs/cli.md's compare example: own column names, L/R choice codes
    pd.DataFrame(
        {
            "animal": ["m1"] * 12 + ["m2"] * 12,
            "side": list("LRRLLLRRLRLR" * 2),
            "rewarded": [1, 0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0] * 2,
        }
    ).to_csv(tmp_path / "mice.csv", index=False)
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for doc, command in doc_commands():
        argv = _size(shlex.split(command)[1:])
        proc = subprocess.run(
            [sys.executable, "-m", "plasticinfer.cli", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"{doc}: {command}\n{proc.stderr[-2000:]}"
    assert (tmp_path / "fit" / "coefficients.png").stat().st_size > 5000
    assert (tmp_path / "sim.png").stat().st_size > 5000
    assert (tmp_path / "plasticinfer-compare" / "comparison.csv").is_file()
