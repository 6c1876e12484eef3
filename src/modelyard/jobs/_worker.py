"""A job worker process: ``python -m modelyard.jobs._worker IN_FD OUT_FD``.

Started as a fresh interpreter rather than through ``multiprocessing``: a spawned
multiprocessing child re-imports the parent's main script, which breaks (or reruns) a
user's script that calls ``run_job`` without an ``if __name__ == "__main__"`` guard,
and cannot work at all from a REPL or stdin. Tasks and outcomes travel as pickles over
two pipes of our own, so the job's prints to standard output cannot corrupt them.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from modelyard.jobs._context import PING, call


def serve(tasks: Connection, outcomes: Connection) -> None:
    """Run tasks until the pipe closes (the parent ended or stopped us)."""
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        if task == PING:  # the parent waits for a started worker to be ready
            outcomes.send(PING)
            continue
        outcomes.send(call(task.function, task.context, task.log_path))


if __name__ == "__main__":
    serve(
        Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False)
    )
