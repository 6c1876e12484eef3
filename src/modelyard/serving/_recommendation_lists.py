"""Published top-N lists in the online store: one version per night, readers switched at once.

A night's lists are written under a view of their own (``recommendations/MODEL/EDITION``),
all of them before one small row, the model's *pointer*, names that edition as current.
A reader reads the pointer, then the user's row of the edition it names, so it answers
from one night or the other, never a mix of two. A view is never written while a pointer
may name it: publishing a night that is already kept (again, or after a rollback) writes
a fresh edition (``NIGHT~STAMP``), and the old one is dropped after the switch. The
pointer keeps the edition before it as ``previous`` (``rollback`` points back to it);
views beyond ``keep`` are dropped after the switch. A reader that meets a view dropped
under it reads the pointer again.

The pointers view holds, per model, the pointer (key ``MODEL``) and each edition's
record (``MODEL@EDITION``, what rollback restores), and under the empty key the newest
publication of any model (read for ``model=None``: one read, not two). A pointer is
written with an event time above the one it replaces, so a publish that took longer than
a rollback still switches (the store keeps the row with the greater event time).

Written here rather than found in a library: the online store's protocol (a row per
key, the newest event time wins, ``drop``) is all it needs, on SQLite and Redis alike.
The rows' format and the views' names are ``_recommendation_rows.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard import _time
from modelyard.errors import InvalidInputError, ModelyardError, NotFoundError
from modelyard.serving._recommendation_rows import (
    INT64,
    LONGEST,
    POPULAR,
    Publication,
    Recommendations,
    check_names,
    decode_list,
    encode_list,
    night_of,
    record_key,
    rows_of,
    user_ids,
    user_key,
    view_of,
)

if TYPE_CHECKING:
    from modelyard.backends.online import OnlineStore

__all__ = ["POINTERS", "RecommendationLists"]

POINTERS = "recommendations/_pointers"
"""The view that holds each model's pointer (and, under the empty key, the newest one)."""
DEFAULT_K = 10
NIGHTLY_JOB = "modelyard jobs run recommendations-nightly"
_NEWEST = b""
_PARSED_MAX = 64  # pointers kept parsed (by their bytes): a reader parses each once


class RecommendationLists:
    """Publishes and reads the nightly lists of the online store ``online``."""

    def __init__(self, online: OnlineStore) -> None:
        self.online = online
        self._parsed: dict[bytes, Publication] = {}

    # -- the reader ------------------------------------------------------------------------
    def current(self, model: str | None = None) -> Publication | None:
        """The publication readers see now (of ``model``, else the newest published)."""
        key = _NEWEST if model is None else model.encode()
        found = self.online.read(POINTERS, [key])[0]
        return None if found is None else self._parse(found[1])

    def _parse(self, raw: bytes) -> Publication:
        publication = self._parsed.get(raw)
        if publication is None:
            publication = Publication.from_json(raw)
            if len(self._parsed) >= _PARSED_MAX:
                self._parsed.clear()
            self._parsed[raw] = publication
        return publication

    def read(
        self, user_id: int, *, k: int | None = None, model: str | None = None
    ) -> Recommendations:
        """``user_id``'s top ``k`` of the current night; the popularity list, flagged, for
        a user the night did not score. ``NotFoundError`` when nothing is published.

        ``k`` None: ``DEFAULT_K``, or the night's k where it kept fewer; a ``k`` above the
        night's is refused (``InvalidInputError`` naming it).
        """
        if k is not None and k < 1:
            raise InvalidInputError(f"k={k}: ask for 1 or more items")
        if not INT64[0] <= user_id <= INT64[1]:
            raise InvalidInputError(f"user id {user_id} is outside int64; no list has it")
        publication = None
        for _ in range(3):  # a publish dropped the edition between the two reads: again
            publication = self.current(model)
            if publication is None:
                raise _nothing_published(model)
            if k is None:
                k = min(DEFAULT_K, publication.k)
            elif k > publication.k:
                raise _k_above(k, publication)
            # The user's row alone: the popularity row only for a user the night did not
            # score (one primary-key read, not an IN of two, for most users).
            view = publication.view()
            row = self.online.read(view, [user_key(user_id)])[0]
            if row is not None:
                items, scores = decode_list(row[1], k)
                return Recommendations(user_id, items, scores, publication, fallback=False)
            row = self.online.read(view, [POPULAR])[0]
            if row is not None:
                items, scores = decode_list(row[1], k)
                return Recommendations(user_id, items, scores, publication, fallback=True)
        assert publication is not None
        raise _gone(publication)

    def read_many(
        self, asked: Sequence[tuple[int, int | None]], *, model: str | None = None
    ) -> list[Recommendations | ModelyardError]:
        """Each ``(user_id, k)``'s list as ``read`` answers it, or the error ``read`` would
        raise for it; one pointer read and one read of the rows for all of them (a server
        answers the reads that wait together so). A store error is raised for all.

        The rows are read after the pointer, from the view it names: every answer is of
        one night. A lone user's row is read alone, the popularity row only when the night
        did not score the user (one small read, not two, for most users).
        """
        done: list[Recommendations | ModelyardError | None] = [None] * len(asked)
        todo = []
        for i, (user_id, k) in enumerate(asked):
            if k is not None and k < 1:
                done[i] = InvalidInputError(f"k={k}: ask for 1 or more items")
            elif not INT64[0] <= user_id <= INT64[1]:
                done[i] = InvalidInputError(f"user id {user_id} is outside int64; no list has it")
            else:
                todo.append(i)
        publication = None
        for _ in range(3):  # a publish dropped the edition between the two reads: again
            if not todo:
                break
            publication = self.current(model)
            if publication is None:
                for i in todo:
                    done[i] = _nothing_published(model)
                todo = []
                break
            wanted = []
            for i in todo:
                k = asked[i][1]
                if k is not None and k > publication.k:
                    done[i] = _k_above(k, publication)
                else:
                    wanted.append(i)
            todo = self._rows(asked, wanted, publication, done)
        if todo:
            assert publication is not None
            for i in todo:
                done[i] = _gone(publication)
        answers = [d for d in done if d is not None]
        assert len(answers) == len(asked)
        return answers

    def _rows(
        self,
        asked: Sequence[tuple[int, int | None]],
        wanted: list[int],
        publication: Publication,
        done: list[Recommendations | ModelyardError | None],
    ) -> list[int]:
        """Answer ``wanted`` (indexes of ``asked``) from ``publication``'s view into
        ``done``; the indexes left unanswered (the view is gone)."""
        if not wanted:
            return []
        view = publication.view()
        keys = [user_key(asked[i][0]) for i in wanted]
        if len(keys) == 1:
            rows = self.online.read(view, keys)
            popular = None
            if rows[0] is None:
                popular = self.online.read(view, [POPULAR])[0]
        else:
            rows = self.online.read(view, [*keys, POPULAR])
            popular = rows.pop()
        default_k = min(DEFAULT_K, publication.k)
        left = []
        for i, row in zip(wanted, rows, strict=True):
            user_id, k = asked[i]
            take = default_k if k is None else k
            if row is not None:
                items, scores = decode_list(row[1], take)
                done[i] = Recommendations(user_id, items, scores, publication, fallback=False)
            elif popular is not None:
                items, scores = decode_list(popular[1], take)
                done[i] = Recommendations(user_id, items, scores, publication, fallback=True)
            else:
                left.append(i)
        return left

    # -- the writer ------------------------------------------------------------------------
    def publish(
        self,
        model: str,
        night: str,
        users: Sequence[int] | np.ndarray[Any, Any],
        items: np.ndarray[Any, Any],
        scores: np.ndarray[Any, Any],
        popular: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
        *,
        version: int | None = None,
        keep: int = 2,
    ) -> Publication:
        """Write ``night``'s lists (row ``i``: ``users[i]``'s ``items[i]`` and ``scores[i]``,
        best first; ``popular``: the fallback list), then switch readers to them.

        ``keep`` nights stay readable (the new one and the one rollback returns to); older
        ones are dropped after the switch. Publishing a night again replaces it (rollback
        then returns to the night before it, not to its first edition).
        """
        check_names(model, night)
        ids = user_ids(users)
        items, scores = np.asarray(items), np.asarray(scores)
        if items.ndim != 2 or items.shape != scores.shape or len(items) != len(ids):
            raise InvalidInputError(
                f"lists of {len(ids)} users need items and scores of shape "
                f"({len(ids)}, k); got {items.shape} and {scores.shape}"
            )
        top, top_scores = np.asarray(popular[0]), np.asarray(popular[1])
        if top.ndim != 1 or top.shape != top_scores.shape:
            raise InvalidInputError(
                f"popular needs (items, scores) of one shape (n,); got {top.shape} and "
                f"{top_scores.shape}"
            )
        if not 1 <= items.shape[1] <= LONGEST or len(top) > LONGEST:
            raise InvalidInputError(
                f"lists of {items.shape[1]} items per user and {len(top)} popular ones: "
                f"keep 1 to {LONGEST} items per list"
            )
        if keep < 1:
            raise InvalidInputError(f"keep={keep}: keep at least the night published")
        now = _time.now_us()
        before = self.current(model)
        editions = () if before is None else (before.edition, *before.kept)
        if night in {night_of(e) for e in editions}:
            # A view a pointer names (or named a moment ago) is never rewritten in place:
            # a reader would see old and new rows. The night's old edition goes after.
            edition = f"{night}~{now}"
        else:
            edition = night
            self.online.drop(view_of(model, edition))  # a half-written earlier try
        rows = rows_of(ids, items, scores, now)
        rows.append((POPULAR, now, encode_list(top, top_scores)))
        self.online.write(view_of(model, edition), rows)
        if before is None:
            previous, older = None, []
        else:
            replaced = before.night == night  # the night readers see now, published again
            previous = before.previous if replaced else before.edition
            older = [e for e in dict.fromkeys(editions) if night_of(e) != night]
        kept = [edition, *older][:keep]
        publication = Publication(
            model=model,
            night=night,
            version=version,
            published_at=_time.to_datetime(now),
            users=len(ids),
            k=int(items.shape[1]),
            previous=previous if previous in kept else None,
            kept=tuple(kept),
            edition=edition,
        )
        self._switch(publication, newest=True)
        for old in editions:
            if old not in kept:
                self.online.drop(view_of(model, old))
        return publication

    def rollback(self, model: str) -> Publication:
        """Point readers back at the night before the current one (kept by ``publish``)."""
        now = self.current(model)
        if now is None:
            raise NotFoundError(f"model {model!r} has no published recommendations to roll back")
        if now.previous is None or now.previous not in now.kept:
            raise NotFoundError(
                f"model {model!r}: night {now.night} has no earlier night kept to roll back to "
                "(a rollback goes back one night only, to a night the store still holds; "
                "RecommendationLists.publish keeps 2 by default)"
            )
        earlier = self.online.read(POINTERS, [record_key(model, now.previous)])[0]
        if earlier is None:
            raise NotFoundError(
                f"model {model!r}: the record of night {night_of(now.previous)} is gone; "
                "publish again"
            )
        back = Publication.from_json(earlier[1])
        kept = (back.edition, *(e for e in now.kept if e != back.edition))
        restored = Publication(
            model=model,
            night=back.night,
            version=back.version,
            published_at=back.published_at,
            users=back.users,
            k=back.k,
            # Further back only where that night's view is still kept (keep >= 3).
            previous=back.previous if back.previous in kept else None,
            kept=kept,  # the newer night stays kept until the next publish drops it
            edition=back.edition,
        )
        newest = self.current()
        self._switch(restored, newest=newest is not None and newest.model == model)
        return restored

    def _switch(self, publication: Publication, *, newest: bool) -> None:
        model = publication.model
        keys = [model.encode(), _NEWEST]
        # Above the rows it replaces: their stamps may be later than this call's clock
        # (a rollback while this publish wrote, or another host's clock).
        stamp = max([_time.now_us()] + [r[0] + 1 for r in self.online.read(POINTERS, keys) if r])
        body = publication.to_json()
        # One row per write: each is atomic on both stores, and the pointer comes last.
        record = record_key(model, publication.edition)
        self.online.write(POINTERS, [(record, stamp, body)])
        self.online.write(POINTERS, [(model.encode(), stamp, body)])
        if newest:
            self.online.write(POINTERS, [(_NEWEST, stamp, body)])


def _nothing_published(model: str | None) -> NotFoundError:
    which = f"for model {model!r} " if model else ""
    return NotFoundError(
        f"no recommendations are published {which}yet; run the nightly job ({NIGHTLY_JOB}); "
        "in a new recommendations workspace, the quickstart first"
    )


def _k_above(k: int, publication: Publication) -> InvalidInputError:
    return InvalidInputError(
        f"k={k}: the {publication.night} lists of {publication.model!r} hold "
        f"{publication.k} items per user; ask for k <= {publication.k}"
    )


def _gone(publication: Publication) -> NotFoundError:
    return NotFoundError(
        f"the {publication.night} lists of {publication.model!r} are missing from the "
        "online store (replaced while read, or dropped); ask again, or publish the night "
        "again"
    )
