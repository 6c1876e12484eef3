"""Child processes that end with their parent, even when the parent is killed with -9.

A server's worker processes and its prediction-log shipping process are of no use
without the process that started them, and left running they hold the port (workers)
or memory (shipper) until someone finds them. Linux delivers a signal to a child whose
parent dies once the child asks for it (``prctl(PR_SET_PDEATHSIG)``); the standard
library has no wrapper for that call, hence ctypes. Elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Have this process receive ``sig`` when ``parent_pid`` (its parent) dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # no libc to ask: the child outlives the parent
        return
    if os.getppid() != parent_pid:  # the parent died before we asked
        os.kill(os.getpid(), sig)
