"""Jobs: Python functions run on a cron schedule, with retries, timeouts, SLAs and alerts."""

from modelyard.jobs._api import (
    backfill,
    compact_predictions,
    get_job,
    monitor_check,
    open_runner,
    run_job,
    workspace_jobs,
)
from modelyard.jobs._context import JobContext, Outcome
from modelyard.jobs._cron import Schedule
from modelyard.jobs._executors import Executors
from modelyard.jobs._history import JobHistory, JobRun
from modelyard.jobs._runner import Runner
from modelyard.jobs._scheduler import Scheduler, wait_all
from modelyard.jobs._spec import JobSpec, check_job_tables, job, parse_job

__all__ = [
    "Executors",
    "JobContext",
    "JobHistory",
    "JobRun",
    "JobSpec",
    "Outcome",
    "Runner",
    "Schedule",
    "Scheduler",
    "backfill",
    "check_job_tables",
    "compact_predictions",
    "get_job",
    "job",
    "monitor_check",
    "open_runner",
    "parse_job",
    "run_job",
    "wait_all",
    "workspace_jobs",
]
