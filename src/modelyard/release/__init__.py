"""Releases: gates against the champion, promotion, canary rollout, rollback, images."""

from modelyard.release._records import ReleaseRecord, current_actor, record, release_history

__all__ = [
    "ReleaseRecord",
    "current_actor",
    "record",
    "release_history",
]
