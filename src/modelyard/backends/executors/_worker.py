"""A local executor's worker: ``python -m modelyard.backends.executors._worker IN_FD OUT_FD``.

Started as a fresh interpreter rather than through ``multiprocessing``: a spawned
multiprocessing child re-imports the parent's main script, which breaks (or reruns) a
user's script without an ``if __name__ == "__main__"`` guard, and cannot work at all
from a REPL or stdin. Tasks and answers travel over two pipes of our own, so a task's
prints to standard output cannot corrupt them.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

from modelyard.backends.executors._task import run

PING = b"ping"  # answered as soon as the imports are done: the parent waits for it
_PARENT_CHECK_S = 0.5


def exit_with_parent(parent: int) -> None:
    """End this process soon after the parent that started it is gone (``kill -9`` of
    ``modelyard jobs run`` or of a scheduler): nobody is left to take the task's answer,
    and its slot may run again elsewhere, so an orphan must not go on running it. The
    pipe's end is not seen while a task runs, hence a watch on the parent itself."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="modelyard-parent-watch", daemon=True).start()


def serve(tasks: Connection, answers: Connection) -> None:
    """Run tasks until the pipe closes (the parent ended or stopped us)."""
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        if task == PING:
            answers.send_bytes(PING)
            continue
        paths, payload = task
        answers.send_bytes(run(paths, payload))


def main() -> None:
    # Ctrl-C in a terminal signals the whole process group: the parent decides what it
    # means (a scheduler lets the runs in flight end), so a worker must not die of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(os.getppid())
    serve(
        Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False)
    )
    # Skip the interpreter's teardown of every module the tasks imported, which takes
    # seconds with an ML stack loaded while the parent waits; exit handlers still run.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
