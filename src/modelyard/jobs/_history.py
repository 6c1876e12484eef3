"""Slots (who runs which logical date) and run history, in the metadata store.

A slot row is the lease. Claiming inserts it, so of two schedulers ticking at the same
time one insert wins and the other sees the key taken: a slot never runs twice. A
crashed owner stops renewing ``lease_until``; once it lapses (or at once, when the
owner was a process of this host that has ended) any scheduler may take the slot over
with a compare-and-set on the old owner and lease, and only one such update can match.
A slot that ended (success, failed, skipped) is never taken by a scheduler again; only
an explicit ``jobs run --date`` or ``backfill --rerun`` does.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard import _time
from modelyard.backends.metadata import MetadataStore
from modelyard.backends.metadata import tables as t
from modelyard.errors import ConflictError, NotFoundError

SlotState = Literal["running", "success", "failed", "skipped"]
RunStatus = Literal["running", "success", "failed", "timeout"]
ENDED = ("success", "failed", "skipped")
ABANDONED_AFTER_S = 5.0
"""A running run whose slot lease lapsed this long ago has lost its owner (a crash)."""


@dataclass(frozen=True)
class JobRun:
    """One run of a job as recorded."""

    run_id: str
    job: str
    logical_date: datetime
    trigger: str
    status: str
    attempts: int
    started_at: datetime
    ended_at: datetime | None
    error: str | None
    log: str

    @property
    def duration_s(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


def default_owner() -> str:
    """Who holds a slot: ``host:pid:tag``, so that a lease of a process that died on this
    host need not be waited out (``owner_gone``)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def owner_gone(owner: str) -> bool:
    """Whether ``owner`` was a process of this host that has ended (``kill -9``, a
    crash): its slots are lapsed now, not when their lease runs out. An owner of another
    host, or one whose process id is alive (even reused), waits for its lease."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def lapsed(slot: dict[str, Any], now_us: int) -> bool:
    """Whether a ``running`` slot's owner has lost it: its lease ran out or it died here."""
    return slot["state"] == "running" and (
        slot["lease_until"] < now_us or owner_gone(slot["owner"])
    )


def _us(when: datetime) -> int:
    return _time.to_us(when, "logical date")


class JobHistory:
    """Slots and runs of every job, on one metadata store."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    # -- slots (leases) ------------------------------------------------------------------
    def claim(
        self, job: str, logical: datetime, owner: str, lease_s: float, *, force: bool = False
    ) -> bool:
        """Take the slot for ``owner``; False when another owner holds or ended it.

        ``force`` (a manual rerun) also takes an ended slot, never a live one.
        """
        now = _time.now_us()
        row = {
            "job": job,
            "logical_date": _us(logical),
            "state": "running",
            "owner": owner,
            "lease_until": now + int(lease_s * 1e6),
            "run_id": None,
            "sla_alerted": 0,
            "updated_at": now,
        }
        try:
            with self.store.write() as conn:
                conn.execute(insert(t.job_slots), [row])
            return True
        except IntegrityError:
            pass
        current = self.slot(job, logical)
        if current is None:  # deleted between the insert and the read: try once more
            return self.claim(job, logical, owner, lease_s, force=force)
        if not (lapsed(current, now) or (force and current["state"] in ENDED)):
            return False
        s = t.job_slots.c
        with self.store.write() as conn:
            moved = conn.execute(
                update(t.job_slots)
                .where(
                    s.job == job,
                    s.logical_date == row["logical_date"],
                    s.owner == current["owner"],
                    s.state == current["state"],
                    s.lease_until == current["lease_until"],
                )
                .values(
                    state="running",
                    owner=owner,
                    lease_until=row["lease_until"],
                    updated_at=now,
                )
            )
        return bool(moved.rowcount == 1)

    def renew(self, job: str, logical: datetime, owner: str, lease_s: float) -> bool:
        """Extend ``owner``'s lease; False when the slot is no longer its own."""
        s = t.job_slots.c
        now = _time.now_us()
        with self.store.write() as conn:
            moved = conn.execute(
                update(t.job_slots)
                .where(s.job == job, s.logical_date == _us(logical), s.owner == owner)
                .where(s.state == "running")
                .values(lease_until=now + int(lease_s * 1e6), updated_at=now)
            )
        return bool(moved.rowcount == 1)

    def release(self, job: str, logical: datetime, owner: str, state: SlotState) -> None:
        s = t.job_slots.c
        with self.store.write() as conn:
            conn.execute(
                update(t.job_slots)
                .where(s.job == job, s.logical_date == _us(logical), s.owner == owner)
                .values(state=state, updated_at=_time.now_us())
            )

    def give_up(self, job: str, logical: datetime, owner: str) -> None:
        """Hand back ``owner``'s slot untaken (its run was interrupted), so that it is due
        again, as a crashed owner's slot would be run again."""
        s = t.job_slots.c
        with self.store.write() as conn:
            conn.execute(
                delete(t.job_slots).where(
                    s.job == job, s.logical_date == _us(logical), s.owner == owner
                )
            )

    def skip(self, job: str, logical: datetime, owner: str) -> bool:
        """Mark a slot the catch-up policy passes over, so it shows as skipped, not lost."""
        if not self.claim(job, logical, owner, 0):
            return False
        self.release(job, logical, owner, "skipped")
        return True

    def slot(self, job: str, logical: datetime) -> dict[str, Any] | None:
        s = t.job_slots.c
        with self.store.read() as conn:
            row = (
                conn.execute(
                    select(t.job_slots).where(s.job == job, s.logical_date == _us(logical))
                )
                .mappings()
                .first()
            )
        return None if row is None else dict(row)

    def last_slot(self, job: str) -> datetime | None:
        """The newest logical date any scheduler or command has taken for ``job``."""
        s = t.job_slots.c
        with self.store.read() as conn:
            newest = conn.execute(select(func.max(s.logical_date)).where(s.job == job)).scalar()
        return _time.to_datetime(newest)

    def slots(self, job: str, states: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        s = t.job_slots.c
        query = select(t.job_slots).where(s.job == job).order_by(s.logical_date)
        if states is not None:
            query = query.where(s.state.in_(states))
        with self.store.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def mark_sla_alerted(self, job: str, logical: datetime) -> bool:
        """True for exactly one caller: the one that sends the SLA alert."""
        s = t.job_slots.c
        with self.store.write() as conn:
            moved = conn.execute(
                update(t.job_slots)
                .where(s.job == job, s.logical_date == _us(logical), s.sla_alerted == 0)
                .values(sla_alerted=1)
            )
        return bool(moved.rowcount == 1)

    # -- runs ----------------------------------------------------------------------------
    def start_run(self, run_id: str, job: str, logical: datetime, trigger: str, owner: str) -> None:
        now = _time.now_us()
        s, r = t.job_slots.c, t.job_runs.c
        with self.store.write() as conn:
            # Whoever holds the slot now, a run of it still marked running was abandoned
            # by an owner that died (its lease lapsed): close it, so history tells so.
            conn.execute(
                update(t.job_runs)
                .where(r.job == job, r.logical_date == _us(logical), r.status == "running")
                .values(
                    status="failed",
                    error="abandoned: its scheduler stopped before the run ended",
                    ended_at=now,
                )
            )
            conn.execute(
                insert(t.job_runs),
                [
                    {
                        "run_id": run_id,
                        "job": job,
                        "logical_date": _us(logical),
                        "trigger": trigger,
                        "status": "running",
                        "attempts": 0,
                        "started_at": now,
                        "ended_at": None,
                        "error": None,
                        "log": "",
                    }
                ],
            )
            conn.execute(
                update(t.job_slots)
                .where(s.job == job, s.logical_date == _us(logical), s.owner == owner)
                .values(run_id=run_id)
            )

    def attempt(self, run_id: str, attempts: int) -> None:
        with self.store.write() as conn:
            conn.execute(
                update(t.job_runs).where(t.job_runs.c.run_id == run_id).values(attempts=attempts)
            )

    def save_log(self, run_id: str, log: str) -> None:
        """The log so far of a run still running, for readers on other machines."""
        r = t.job_runs.c
        with self.store.write() as conn:
            conn.execute(
                update(t.job_runs).where(r.run_id == run_id, r.status == "running").values(log=log)
            )

    def end_run(self, run_id: str, status: RunStatus, error: str | None, log: str) -> None:
        with self.store.write() as conn:
            conn.execute(
                update(t.job_runs)
                .where(t.job_runs.c.run_id == run_id)
                .values(status=status, error=error, log=log, ended_at=_time.now_us())
            )

    def close_abandoned(self) -> None:
        """Mark failed the runs still ``running`` whose owner died (``kill -9`` of
        ``jobs run``, a lost host): its process ended on this host, or its slot's lease
        lapsed. Without a scheduler to take the slot over, nothing else would, and
        ``jobs runs`` said ``running`` forever."""
        r, s = t.job_runs.c, t.job_slots.c
        now = _time.now_us()
        running = (
            select(r.run_id, s.owner, s.lease_until)
            .join(t.job_slots, (s.job == r.job) & (s.logical_date == r.logical_date))
            .where(r.status == "running", s.run_id == r.run_id, s.state == "running")
        )
        with self.store.read() as conn:
            dead = [
                run_id
                for run_id, owner, lease_until in conn.execute(running)
                if lease_until < now - int(ABANDONED_AFTER_S * 1e6) or owner_gone(owner)
            ]
        if not dead:
            return
        with self.store.write() as conn:
            conn.execute(
                update(t.job_runs)
                .where(r.run_id.in_(dead), r.status == "running")
                .values(
                    status="failed",
                    error="abandoned: its process died (it stopped renewing the slot's "
                    "lease) before the run ended",
                    ended_at=now,
                )
            )

    def runs(self, job: str | None = None, *, limit: int = 50) -> list[JobRun]:
        """The newest runs (of ``job``, or of every job), newest first; a run whose owner
        died shows failed (``close_abandoned``)."""
        self.close_abandoned()
        r = t.job_runs.c
        query = select(t.job_runs).order_by(r.started_at.desc(), r.run_id).limit(limit)
        if job is not None:
            query = query.where(r.job == job)
        with self.store.read() as conn:
            return [_run(row) for row in conn.execute(query).mappings()]

    def run(self, run_id: str) -> JobRun:
        self.close_abandoned()
        r = t.job_runs.c
        with self.store.read() as conn:
            rows = conn.execute(
                select(t.job_runs).where(r.run_id.startswith(run_id, autoescape=True))
            ).mappings()
            found = [_run(row) for row in rows]
        if not found:
            raise NotFoundError(f"no job run {run_id!r}; list them with 'modelyard jobs runs'")
        if len(found) > 1:
            raise ConflictError(f"run id {run_id!r} is ambiguous; give more of it")
        return found[0]


def _run(row: Any) -> JobRun:
    return JobRun(
        run_id=row["run_id"],
        job=row["job"],
        logical_date=_time.to_datetime(row["logical_date"]),
        trigger=row["trigger"],
        status=row["status"],
        attempts=row["attempts"],
        started_at=_time.to_datetime(row["started_at"]),
        ended_at=_time.to_datetime(row["ended_at"]),
        error=row["error"],
        log=row["log"],
    )
