"""Jobs: Python functions run on a cron schedule, with retries, timeouts, SLAs and alerts."""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard._progress import (
        Progress,
    )
    from modelyard.jobs._api import (
        backfill,
        compact_predictions,
        get_job,
        monitor_check,
        open_runner,
        run_job,
        workspace_jobs,
    )
    from modelyard.jobs._context import (
        JobContext,
        Outcome,
    )
    from modelyard.jobs._cron import (
        Schedule,
    )
    from modelyard.jobs._executors import (
        Executors,
    )
    from modelyard.jobs._history import (
        JobHistory,
        JobRun,
    )
    from modelyard.jobs._logs import (
        find_run,
        follow_log,
        run_log,
    )
    from modelyard.jobs._runner import (
        Runner,
    )
    from modelyard.jobs._scheduler import (
        Scheduler,
        run_due,
        wait_all,
    )
    from modelyard.jobs._spec import (
        JobSpec,
        check_job_tables,
        job,
        parse_job,
    )

__all__ = [
    "Executors",
    "JobContext",
    "JobHistory",
    "JobRun",
    "JobSpec",
    "Outcome",
    "Progress",
    "Runner",
    "Schedule",
    "Scheduler",
    "backfill",
    "check_job_tables",
    "compact_predictions",
    "find_run",
    "follow_log",
    "get_job",
    "job",
    "monitor_check",
    "open_runner",
    "parse_job",
    "run_due",
    "run_job",
    "run_log",
    "wait_all",
    "workspace_jobs",
]

_EXPORTS = {
    "modelyard._progress": [
        "Progress",
    ],
    "modelyard.jobs._api": [
        "backfill",
        "compact_predictions",
        "get_job",
        "monitor_check",
        "open_runner",
        "run_job",
        "workspace_jobs",
    ],
    "modelyard.jobs._context": [
        "JobContext",
        "Outcome",
    ],
    "modelyard.jobs._cron": [
        "Schedule",
    ],
    "modelyard.jobs._executors": [
        "Executors",
    ],
    "modelyard.jobs._history": [
        "JobHistory",
        "JobRun",
    ],
    "modelyard.jobs._logs": [
        "find_run",
        "follow_log",
        "run_log",
    ],
    "modelyard.jobs._runner": [
        "Runner",
    ],
    "modelyard.jobs._scheduler": [
        "Scheduler",
        "run_due",
        "wait_all",
    ],
    "modelyard.jobs._spec": [
        "JobSpec",
        "check_job_tables",
        "job",
        "parse_job",
    ],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
