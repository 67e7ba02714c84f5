"""Ctrl-C on the command line: never lost, and a second one always quits.

Python turns SIGINT into a ``KeyboardInterrupt`` at the next bytecode of the main thread. When that
bytecode belongs to a destructor or a callback run from C (JAX, h5py and tqdm run such code), the
exception is printed as "Exception ignored" and the program runs on, so an interrupt can be lost. The
command line therefore counts the signals: the optimisation loop checks the count after every compiled
chunk and stops as if it had caught the exception, and a second Ctrl-C leaves at once with status 130.
The Python API keeps Python's own handler (Jupyter's interrupt button works as usual) unless
:func:`install` is called.
"""

from __future__ import annotations

import os
import signal
import sys

_count = 0


def count() -> int:
    """How many SIGINTs the handler has seen (0 when it is not installed)."""
    return _count


def _handler(signum, frame):
    global _count
    _count += 1
    if _count > 1:  # the first one did not stop the program quickly enough: leave now, saving nothing
        try:
            sys.stderr.write("\ninterrupted\n")
            sys.stderr.flush()
        finally:
            os._exit(130)
    raise KeyboardInterrupt


def install() -> None:
    """Count SIGINTs (see the module docstring); call from the main thread."""
    signal.signal(signal.SIGINT, _handler)


__all__ = ["count", "finished", "install"]


def finished(result):
    """``result`` of a fit that an analysis builds on; an interrupted one stops that analysis too.

    ``fit`` returns the best parameters so far when interrupted, which is what a user fitting one
    model wants. A comparison, a calibration or a hierarchical start built on such a fit would report
    numbers from a half-fitted model, so inside them the interrupt goes on up as a KeyboardInterrupt.
    """
    if getattr(result, "interrupted", False):
        raise KeyboardInterrupt
    return result
