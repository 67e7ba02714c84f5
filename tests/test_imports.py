"""Every module imports on its own, in any order: no import cycles among the library's modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import plasticinfer as pi

LIBRARY = Path(pi.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, name: str) -> set[str]:
    """Modules of the library imported at module level (not inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("plasticinfer"):
                out.add(mod)
                for alias in node.names:
                    out.add(f"{mod}.{alias.name}")
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("plasticinfer")}
    return out


def test_no_import_cycles_between_private_modules():
    files = {_module_name(p): p for p in LIBRARY.rglob("*.py")}
    graph = {n: {m for m in _top_level_imports(p, n) if m in files and m != n} for n, p in files.items()}
    # A package __init__ importing its own submodules is the front door, not a cycle; look at module files only.
    graph = {n: {m for m in deps if not files[m].name == "__init__.py"} for n, deps in graph.items()
             if files[n].name != "__init__.py"}
    assert {"plasticinfer._optimise", "plasticinfer._fit_result"} <= graph["plasticinfer._fit"]  # the scan sees imports
    seen, stack, cycles = set(), [], []

    def visit(n):
        if n in stack:
            cycles.append(stack[stack.index(n):] + [n])
            return
        if n in seen:
            return
        seen.add(n)
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            visit(m)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    assert not cycles, cycles


def test_results_io_imports_first():
    code = "import plasticinfer._results_io, plasticinfer._fit_result, plasticinfer._optimise, plasticinfer._checkpoint"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=LIBRARY.parent, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_tutorials_and_docs_import_only_public_modules():
    import re

    pattern = re.compile(r"^\s*(from|import)\s+plasticinfer(\.[A-Za-z]\w*)*\._\w+", re.MULTILINE)
    attribute = re.compile(r"\bpi(\.[A-Za-z]\w*)*\._[a-z]\w*")  # pi._convert.choice_data(...) in code
    root = LIBRARY.parent
    offenders = [
        f"{p.relative_to(root)}: {m.group(0).strip()}"
        for p in sorted([*root.glob("tutorials/*.py"), *root.glob("docs/*.md"), root / "README.md"])
        for pat in (pattern, attribute)
        for m in pat.finditer(p.read_text(encoding="utf-8"))
    ]
    assert not offenders, offenders
    assert pattern.search("from plasticinfer._convert import choice_data")  # the patterns are not vacuous
    assert attribute.search("data = pi._convert.choice_data(ds)") and not attribute.search("pi.compare.compare(h)")
