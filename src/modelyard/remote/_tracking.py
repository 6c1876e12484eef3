"""Runs through the team server: a run's writes (``RemoteRunStore``, what ``Run`` calls)
and the queries of ``ws.runs`` (``RemoteTracking``), each one HTTP call that the server
answers with the same code a direct client runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelyard.remote._client import TeamClient
from modelyard.tracking import Experiment, MetricPoint, RunInfo


class RemoteRunStore:
    """``tracking.RunStore`` over HTTP. Metric batches and new params are not retried
    once sent (a second copy would be stored); everything else is an upsert."""

    def __init__(self, client: TeamClient) -> None:
        self.client = client

    def start(
        self, row: Mapping[str, Any], params: Mapping[str, str], tags: Mapping[str, str]
    ) -> None:
        self.client.call("run_store", "start", dict(row), dict(params), dict(tags))

    def add_params(self, run_id: str, params: Mapping[str, str]) -> None:
        self.client.call("run_store", "add_params", run_id, dict(params))

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.call("run_store", "set_tags", run_id, dict(tags), idempotent=True)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        self.client.call("run_store", "write_metrics", rows)

    def renew(self, run_id: str, lease_until: int) -> None:
        self.client.call("run_store", "renew", run_id, lease_until, idempotent=True)

    def end(self, run_id: str, rows: list[dict[str, Any]], values: Mapping[str, Any]) -> None:
        self.client.call("run_store", "end", run_id, rows, dict(values), idempotent=not rows)

    def record_artifact(self, row: Mapping[str, Any]) -> None:
        self.client.call("run_store", "record_artifact", dict(row), idempotent=True)

    def log_dataset(self, row: Mapping[str, Any]) -> None:
        self.client.call("run_store", "log_dataset", dict(row), idempotent=True)


class RemoteTracking:
    """``ws.runs`` of a workspace whose metadata.url is a team server."""

    def __init__(self, client: TeamClient) -> None:
        self.client = client

    def get(self, run_id: str) -> RunInfo:
        found: RunInfo = self.client.call("tracking", "get", run_id, idempotent=True)
        return found

    def experiments(self) -> list[Experiment]:
        found: list[Experiment] = self.client.call("tracking", "experiments", idempotent=True)
        return found

    def search(
        self,
        filter: str | None = None,
        *,
        order_by: str | None = None,
        experiment: str | None = None,
        max_results: int = 100,
    ) -> list[RunInfo]:
        found: list[RunInfo] = self.client.call(
            "tracking",
            "search",
            filter,
            order_by=order_by,
            experiment=experiment,
            max_results=max_results,
            idempotent=True,
        )
        return found

    def fail_lapsed(self) -> list[str]:
        found: list[str] = self.client.call("tracking", "fail_lapsed", idempotent=True)
        return found

    def history(self, run_id: str, key: str) -> list[MetricPoint]:
        found: list[MetricPoint] = self.client.call(
            "tracking", "history", run_id, key, idempotent=True
        )
        return found
