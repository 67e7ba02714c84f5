"""One rule for progress bars.

Every ``progress=`` argument of the Python API defaults to ``True``. A bar is drawn only where someone
watches it: stderr is a terminal, or the code runs in a Jupyter kernel (tqdm.auto then draws a widget).
Redirected to a file or a pipe — a log, a batch job, pytest's capture — a tqdm bar would write a line
per refresh, so there it stays off. ``progress=False`` silences it on a terminal too.
"""

from __future__ import annotations

import sys


def _in_jupyter() -> bool:
    ipython = sys.modules.get("IPython")  # never imported here: only a running IPython has it loaded
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython too old or too broken to ask: no widget
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def show_progress(progress: bool) -> bool:
    """Whether a bar is drawn: asked for, and stderr is a terminal or this is a Jupyter kernel."""
    if not progress:
        return False
    stream = sys.stderr
    try:
        if stream is not None and stream.isatty():
            return True
    except (AttributeError, ValueError):  # a replaced or closed stderr
        pass
    return _in_jupyter()


__all__ = ["show_progress"]
