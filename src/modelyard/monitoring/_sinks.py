"""Where alerts go: ``log``, ``file`` and ``webhook`` (plain JSON or a Slack payload).

A sink type is a pydantic model with a ``type`` field and a ``send(alert)`` method,
registered with ``register_sink``; the built-in ones register exactly that way. In
``modelyard.toml`` a sink is a table under ``[alerts.sinks.NAME]`` whose ``type``
picks the model that validates the rest. The webhook posts with the standard
library's ``urllib``: one JSON POST with a timeout and a few retries needs no HTTP
client dependency.

A webhook tries ``retries + 1`` times (3 by default), waiting ``backoff_s``, then twice
that, between tries, all within ``deadline_s`` (10 s): a 5xx, a 429, a timeout or a
refused connection may pass on the next try; another 4xx (a wrong URL or payload) will
not, so it fails at once. What still fails is raised, and the alert check keeps the
notice as undelivered and sends it again on its next run.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from modelyard._redact import redact, redact_value
from modelyard._secrets import resolve
from modelyard.errors import ConfigError

__all__ = ["Alert", "FileSink", "LogSink", "SINK_TYPES", "Sink", "WebhookSink", "register_sink"]


@dataclass(frozen=True)
class Alert:
    """One notification: a rule that started firing, or resolved."""

    rule: str
    state: Literal["firing", "resolved"]
    severity: str
    subject: str
    metric: str
    value: float | None
    condition: str
    window: str
    since: datetime
    at: datetime
    description: str = ""
    # Set by alerts that are not rule evaluations (a failed job, a rolled-back canary),
    # whose story a metric and a condition tell badly.
    summary: str = ""

    @property
    def message(self) -> str:
        if self.summary:
            return f"[{self.severity}] {self.rule} {self.state.upper()}: {self.summary}"
        shown = "no data" if self.value is None else f"{self.value:.4g}"
        verb = "FIRING" if self.state == "firing" else "resolved"
        head = f"[{self.severity}] {self.rule} {verb}: {self.metric} of {self.subject} = {shown}"
        return f"{head} (condition {self.condition} over {self.window})"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = self.since.isoformat()
        data["at"] = self.at.isoformat()
        data["message"] = self.message
        return data


class Sink(BaseModel):
    """Base of sink types: validates its options, then ``send`` delivers or raises."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str
    # The workspace folder, for sinks with relative paths; set by the loader, not the user.
    root: Path = Field(default=Path("."), exclude=True)

    @abstractmethod
    def send(self, alert: Alert) -> None:
        """Deliver ``alert``; raise on failure (the check records it and goes on)."""


SINK_TYPES: dict[str, type[Sink]] = {}
S = TypeVar("S", bound=type[Sink])


def register_sink(name: str) -> Callable[[S], S]:
    """Class decorator: make ``type = "name"`` in ``[alerts.sinks.X]`` build this sink."""

    def add(cls: S) -> S:
        SINK_TYPES[name] = cls
        return cls

    return add


def build_sink(name: str, options: dict[str, Any], root: Path) -> Sink:
    kind = options.get("type")
    cls = SINK_TYPES.get(str(kind))
    if cls is None:
        raise ConfigError(
            f"alert sink '{name}' has type {kind!r}; use one of: {', '.join(sorted(SINK_TYPES))}"
        )
    from pydantic import ValidationError

    try:
        return cls.model_validate({**options, "root": root})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"alert sink '{name}': {where}: {first['msg']}; fix [alerts.sinks.{name}]"
        ) from None


@register_sink("log")
class LogSink(Sink):
    """A JSON line on standard error, for whatever collects the process's output."""

    type: Literal["log"] = "log"

    def send(self, alert: Alert) -> None:
        sys.stderr.write(json.dumps({"event": "alert", **alert.to_json()}) + "\n")
        sys.stderr.flush()


@register_sink("file")
class FileSink(Sink):
    """Appends a JSON line per alert to ``path`` (relative to the workspace)."""

    type: Literal["file"] = "file"
    path: str

    def send(self, alert: Alert) -> None:
        target = Path(self.path) if Path(self.path).is_absolute() else self.root / self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(alert.to_json()) + "\n").encode()
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # whole lines even with two checks at once
            os.write(fd, line)
        finally:
            os.close(fd)


_SEVERITY_EMOJI = {
    "critical": ":rotating_light:",
    "warning": ":warning:",
    "info": ":information_source:",
}


@register_sink("webhook")
class WebhookSink(Sink):
    """POSTs the alert as JSON; ``format = "slack"`` sends Slack's incoming-webhook payload."""

    type: Literal["webhook"] = "webhook"
    # A URL, or a secret reference to one (env:NAME, file:/path): Slack's URL is a secret.
    url: str = Field(pattern=r"^(https?://|env:|file:)")
    format: Literal["json", "slack"] = "json"
    headers: dict[str, str] = {}
    timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_s: float = Field(default=0.5, ge=0, le=60)
    deadline_s: float = Field(default=10.0, gt=0, le=300)

    @property
    def where(self) -> str:
        """The URL without its path: webhook paths often hold the secret (Slack's do)."""
        parts = urllib.parse.urlsplit(self.url)
        return redact(f"{parts.scheme}://{parts.netloc}/…")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "url":
                value = self.where
            elif name == "headers":
                value = {k: redact_value(k, v) for k, v in value.items()}
            yield name, value

    def payload(self, alert: Alert) -> dict[str, Any]:
        if self.format == "json":
            return alert.to_json()
        emoji = (
            _SEVERITY_EMOJI.get(alert.severity, "")
            if alert.state == "firing"
            else ":white_check_mark:"
        )
        text = f"{emoji} {alert.message}".strip()
        fields = [
            {"type": "mrkdwn", "text": f"*Rule*\n{alert.rule}"},
            {"type": "mrkdwn", "text": f"*Severity*\n{alert.severity}"},
            {"type": "mrkdwn", "text": f"*Subject*\n{alert.subject}"},
            {"type": "mrkdwn", "text": f"*Since*\n{alert.since.isoformat(timespec='seconds')}"},
        ]
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "fields": fields},
        ]
        if alert.description:
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": alert.description}]}
            )
        return {"text": text, "blocks": blocks}

    def send(self, alert: Alert) -> None:
        body = json.dumps(self.payload(alert)).encode()
        # Secret references are read here, at use, and never kept on the sink.
        url = resolve(self.url, "alert sink url")
        given = {k: resolve(v, f"alert sink header {k}") for k, v in self.headers.items()}
        headers = {"Content-Type": "application/json", **given}
        deadline = time.monotonic() + self.deadline_s
        tries = self.retries + 1
        for attempt in range(1, tries + 1):
            left = deadline - time.monotonic()
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                timeout = max(min(self.timeout_s, left), 0.05)
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    response.read()
                return
            except urllib.error.HTTPError as exc:
                failure = f"{self.where} answered {exc.code}"
                # A 4xx will not change on retry (a wrong URL or payload); a 5xx or 429 may.
                if exc.code < 500 and exc.code != 429:
                    raise RuntimeError(failure) from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                failure = f"cannot reach {self.where}: {getattr(exc, 'reason', exc)}"
            pause = self.backoff_s * 2 ** (attempt - 1)
            if attempt == tries or time.monotonic() + pause >= deadline:
                raise RuntimeError(f"{failure} ({_tries(attempt)} in {self.deadline_s:g} s)")
            time.sleep(pause)


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"
