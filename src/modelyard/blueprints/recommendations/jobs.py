"""Job functions of the recommendations workspace: ``[jobs.NAME] function = "…:nightly"``."""

from __future__ import annotations

from modelyard.blueprints.recommendations._config import settings_of
from modelyard.blueprints.recommendations._nightly import (
    REPLAY,
    night_name,
    night_number,
    run_night,
)
from modelyard.errors import ConfigError
from modelyard.jobs import JobContext, get_job

__all__ = ["nightly"]


class InjectedFailure(RuntimeError):
    """The failure ``blueprint.fail_night`` asks for, to show a retry (the next attempt
    of the night succeeds)."""


def nightly(ctx: JobContext) -> dict[str, object]:
    """Refit on every rating so far, rank every user's unseen items, check the lists for
    bias and publish them as the night's version; ``params.executor`` = local | ray | ray://…
    spreads the ranking over partitions of users."""
    settings = settings_of(ctx.workspace)
    if settings.anchor is None:
        raise ConfigError(
            "blueprint.anchor is not set; run 'modelyard quickstart --blueprint "
            "recommendations' first (it writes the day the rating log ends by)"
        )
    night = night_name(ctx.interval_end)
    injected = night_number(settings, ctx.interval_end) == settings.fail_night
    if injected and ctx.params.get(REPLAY) and ctx.attempt == 1:
        raise InjectedFailure(
            f"night {night}: injected failure on the first attempt (blueprint.fail_night = "
            f"{settings.fail_night}); the retry publishes the night"
        )
    executor = ctx.params.get("executor")
    sinks = get_job(ctx.workspace, ctx.job).sinks
    done = run_night(
        ctx.workspace,
        settings,
        ctx.interval_end,
        executor=str(executor) if executor and executor != "inline" else None,
        sinks=sinks,
        log=ctx.log,
    )
    if done.publication is None:  # a blocked night raised: this one is older than the live
        ctx.log.info("night %s: recorded as version %d, not published", night, done.version)
        return {"night": night, "version": done.version, "superseded_by": done.superseded_by}
    ctx.log.info(
        "night %s: version %d on %d interactions of %d users and %d items; top-%d %s in %.2f s; "
        "published (readers switched; night %s kept for rollback)",
        night,
        done.version,
        done.interactions,
        done.users,
        done.items,
        done.publication.k,
        done.ranked_on,
        done.seconds["top_n"],
        done.publication.previous_night or "none",
    )
    return {"night": night, "version": done.version, "users": done.users}
