"""The row format of published top-N lists, and the names of their views and keys.

A user's row holds the list's length (2 bytes), its items as little-endian int64 and its
scores as float32, packed (``struct`` and ``numpy.frombuffer`` read 10 items in
microseconds); its key is the user id as 8 big-endian bytes. A night's rows live under
the view ``recommendations/MODEL/EDITION``; a ``Publication`` (JSON) is what a model's
pointer holds. ``_recommendation_lists.py`` writes and switches them.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import orjson

from modelyard.errors import InvalidInputError

__all__ = ["Publication", "Recommendations", "decode_list", "encode_list", "view_of"]

INT64 = (-(2**63), 2**63 - 1)
POPULAR = b"\x00popular"  # the fallback list's key: no user id encodes to 9 bytes
_HEADER = struct.Struct(">H")  # how many items the row holds
LONGEST = 65535  # the most items a row can hold (its length is 2 bytes)
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Publication:
    """One model's published night, as its pointer holds it."""

    model: str
    night: str  # YYYY-MM-DD: the night whose job computed the lists
    version: int | None  # the registered model version that scored them
    published_at: datetime
    users: int
    k: int  # items kept per user (at most)
    previous: str | None = None  # the edition rollback returns to
    kept: tuple[str, ...] = field(default_factory=tuple)  # editions whose views exist
    edition: str = ""  # the view's name: the night, or NIGHT~STAMP when published again

    def view(self, edition: str | None = None) -> str:
        return view_of(self.model, edition or self.edition or self.night)

    @property
    def previous_night(self) -> str | None:
        return None if self.previous is None else night_of(self.previous)

    @property
    def kept_nights(self) -> tuple[str, ...]:
        return tuple(night_of(e) for e in self.kept)

    def to_json(self) -> bytes:
        body = asdict(self)
        body["published_at"] = self.published_at.isoformat()
        body["kept"] = list(self.kept)
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Publication:
        body = json.loads(raw)
        body["published_at"] = datetime.fromisoformat(body["published_at"])
        body["kept"] = tuple(body.get("kept", ()))
        body.setdefault("edition", body["night"])
        return cls(**body)


@dataclass(frozen=True)
class Recommendations:
    """One user's list as read: best first."""

    user_id: int
    items: list[int]
    scores: list[float]
    publication: Publication
    fallback: bool  # the popularity list: the user was not in the night's lists


def view_of(model: str, edition: str) -> str:
    return f"recommendations/{model}/{edition}"


def night_of(edition: str) -> str:
    return edition.split("~", 1)[0]


def user_key(user_id: int) -> bytes:
    return struct.pack(">q", user_id)


def encode_list(items: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]) -> bytes:
    """One list, packed; entries whose score is not finite (``top_n``'s padding of a user
    with fewer unseen items than k: item -1, score -inf) are left out."""
    items, scores = np.asarray(items), np.asarray(scores, dtype="<f4")
    real = np.isfinite(scores)
    if not real.all():
        items, scores = items[real], scores[real]
    return (
        _HEADER.pack(len(items))
        + np.ascontiguousarray(items, dtype="<i8").tobytes()
        + np.ascontiguousarray(scores, dtype="<f4").tobytes()
    )


def decode_list(raw: bytes, k: int) -> tuple[list[int], list[float]]:
    (count,) = _HEADER.unpack_from(raw)
    take = min(k, count)
    items = list(struct.unpack_from(f"<{take}q", raw, _HEADER.size))
    scores = np.frombuffer(raw, dtype="<f4", count=take, offset=_HEADER.size + 8 * count)
    # orjson writes a float32 as its shortest text: read back, 0.93 stays 0.93 (not
    # 0.9300000071525574, as float() of it gives), in a microsecond for 10 scores.
    return items, orjson.loads(orjson.dumps(scores, option=orjson.OPT_SERIALIZE_NUMPY))


def record_key(model: str, edition: str) -> bytes:
    return f"{model}@{edition}".encode()


def check_names(model: str, night: str) -> None:
    if not _MODEL.fullmatch(model):
        raise InvalidInputError(
            f"model name {model!r}: use letters, digits, '_', '.' and '-' (as registered)"
        )
    try:
        date.fromisoformat(night)
        well_formed = len(night) == 10
    except ValueError:
        well_formed = False
    if not well_formed:
        raise InvalidInputError(f"night {night!r}: write the night's date as YYYY-MM-DD")


def rows_of(
    ids: np.ndarray[Any, Any], items: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], at: int
) -> list[tuple[bytes, int, bytes]]:
    """Every user's row; a full list is packed without ``encode_list``'s checks."""
    packed_items = np.ascontiguousarray(items, dtype="<i8")
    packed_scores = np.ascontiguousarray(scores, dtype="<f4")
    full = np.isfinite(packed_scores).all(axis=1)
    header = _HEADER.pack(items.shape[1])
    return [
        (
            user_key(user),
            at,
            header + packed_items[i].tobytes() + packed_scores[i].tobytes()
            if full[i]
            else encode_list(items[i], scores[i]),
        )
        for i, user in enumerate(ids.tolist())
    ]


def user_ids(users: Sequence[int] | np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    try:
        ids = np.asarray(users)
    except OverflowError:
        ids = np.asarray(users, dtype=object)
    if ids.ndim != 1 or (len(ids) and ids.dtype.kind not in "iu"):
        raise InvalidInputError(
            "users must be one list of integer ids that fit int64 (-2**63 to 2**63-1)"
        )
    if ids.dtype.kind == "u" and len(ids) and int(ids.max()) > INT64[1]:
        raise InvalidInputError(f"user id {int(ids.max())} is beyond int64; ids must fit it")
    return ids.astype(np.int64)
