"""Cron schedules and the data interval of each slot, in UTC.

croniter does the cron arithmetic. The interval convention is Airflow's, which users
of backfills expect: a slot's *logical date* is the start of the data interval it
covers, and the run is due when that interval has ended. With ``0 2 * * *`` the run
for logical date 2026-11-24T02:00 covers [24th 02:00, 25th 02:00) and starts at
25th 02:00; ``jobs backfill --start 2026-11-01 --end 2026-11-07`` names data days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import CroniterBadCronError, croniter

from modelyard._time import aware, parse_time
from modelyard.errors import InvalidInputError

_LAST_SLOTS = 100_000  # a guard against a backfill over years of a per-second schedule


@dataclass(frozen=True)
class Schedule:
    """A cron expression: 5 fields, or 6 with seconds last (croniter's form)."""

    cron: str

    @classmethod
    def parse(cls, text: object) -> Schedule:
        if not isinstance(text, str) or len(text.split()) not in (5, 6):
            raise InvalidInputError(
                f"schedule {text!r} is not a cron string; write 5 fields "
                "(minute hour day month weekday), e.g. '0 2 * * *' for 02:00 daily"
            )
        try:
            croniter(text, datetime(2000, 1, 1, tzinfo=UTC))
        except (CroniterBadCronError, ValueError, KeyError) as exc:
            raise InvalidInputError(
                f"schedule {text!r} is not a valid cron string ({exc}); e.g. '0 2 * * *'"
            ) from None
        return cls(" ".join(text.split()))

    def next_after(self, when: datetime) -> datetime:
        """The first slot strictly after ``when``."""
        return _aware(croniter(self.cron, _aware(when)).get_next(datetime))

    def last_at_or_before(self, when: datetime) -> datetime:
        """The latest slot at or before ``when``."""
        when = _aware(when)
        if self.is_slot(when):
            return when
        return _aware(croniter(self.cron, when).get_prev(datetime))

    def is_slot(self, when: datetime) -> bool:
        when = _aware(when)
        return self.next_after(when - timedelta(microseconds=1)) == when

    def interval(self, logical: datetime) -> tuple[datetime, datetime]:
        """The data interval ``[logical, next slot)`` of the run for ``logical``."""
        return logical, self.next_after(logical)

    def due(self, since: datetime | None, now: datetime) -> list[datetime]:
        """Logical dates after ``since`` (exclusive) whose interval ended by ``now``.

        With ``since`` None (a job never run) only the newest due slot: a new job does not
        replay history unless asked to with ``jobs backfill``.
        """
        now = _aware(now)
        newest_end = self.last_at_or_before(now)
        newest = _aware(croniter(self.cron, newest_end).get_prev(datetime))
        if since is None:
            return [newest]
        out: list[datetime] = []
        current = self.next_after(_aware(since))
        while current <= newest and len(out) < _LAST_SLOTS:
            out.append(current)
            current = self.next_after(current)
        return out

    def between(self, start: datetime, end: datetime) -> list[datetime]:
        """Every slot with ``start <= logical date <= end``."""
        start, end = _aware(start), _aware(end)
        out: list[datetime] = []
        current = start if self.is_slot(start) else self.next_after(start)
        while current <= end:
            out.append(current)
            if len(out) > _LAST_SLOTS:
                raise InvalidInputError(
                    f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} holds more than "
                    f"{_LAST_SLOTS} slots of '{self.cron}'; backfill a shorter range"
                )
            current = self.next_after(current)
        return out


def _aware(when: datetime) -> datetime:
    return aware(when, "time")


def logical_date_for(
    schedule: Schedule | None, given: str | None, now: datetime, *, assume_utc: bool = False
) -> datetime:
    """The logical date ``jobs run --date`` means.

    A slot is taken as is; a bare day means that day's first slot; no date means the
    newest slot whose interval has ended (what the scheduler would run now). A job
    without a schedule runs for the date given, or for now.
    """
    if schedule is None:
        return _when(given, assume_utc) if given else _aware(now).replace(microsecond=0)
    if given is None:
        return schedule.due(None, now)[0]
    when = _when(given, assume_utc)
    if schedule.is_slot(when):
        return when
    if len(given) == 10:
        first = schedule.next_after(when - timedelta(microseconds=1))
        if first.date() == when.date():
            return first
    before, after = schedule.last_at_or_before(when), schedule.next_after(when)
    raise InvalidInputError(
        f"{given} is not a slot of schedule '{schedule.cron}'; the nearest are "
        f"{before:%Y-%m-%dT%H:%M:%S} and {after:%Y-%m-%dT%H:%M:%S}"
    )


def _when(given: str, assume_utc: bool) -> datetime:
    return parse_time(given, "--date", assume_utc=assume_utc)
