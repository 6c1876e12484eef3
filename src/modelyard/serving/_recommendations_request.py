"""The recommendation read's protocol: the request's path and query parsed into one-line
422s, the answer's JSON, and the route's OpenAPI document. ``_recommendations_route.py``
answers the requests; this module says what a request and an answer look like.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import orjson

from modelyard.errors import FieldError, SchemaValidationError
from modelyard.serving._fast import Reply
from modelyard.serving._openapi import error_response, json_ok
from modelyard.serving._recommendation_rows import INT64, Recommendations

_INTEGER = re.compile(r"-?[0-9]+")
_PLAIN_K = re.compile(rb"k=([1-9][0-9]{0,17})").fullmatch
_PARAMS = ("k", "model")
_JSON_OPTIONS = orjson.OPT_UTC_Z


def invalid(field: str, message: str) -> SchemaValidationError:
    return SchemaValidationError([FieldError(field, message)], what="request")


def user_id_of(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise invalid(
            "user_id", f"user id {text[:40]!r} is not an integer; use /v1/recommendations/5"
        )
    value = int(text) if len(text) < 40 else INT64[1] + 1
    if not INT64[0] <= value <= INT64[1]:
        raise invalid(
            "user_id", f"user id {text[:40]} is beyond int64 (-2**63 to 2**63-1); no list has it"
        )
    return value


def query_of(raw: bytes) -> tuple[int | None, str | None]:
    """(k, model) of the query string: ``?k=10&model=NAME``, each at most once."""
    if not raw:
        return None, None
    plain = _PLAIN_K(raw)  # "k=10", as most callers ask: no parsing needed
    if plain is not None:
        return int(plain[1]), None
    given: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if name not in _PARAMS:
            raise invalid(
                name, f"unknown query parameter {name[:40]!r}; this route takes k and model"
            )
        if name in given:
            raise invalid(name, f"{name} is given twice; give it once")
        given[name] = value
    k = None  # 10, or all the night kept where it kept fewer
    if "k" in given:
        text = given["k"]
        if not _INTEGER.fullmatch(text):
            raise invalid("k", f"k={text[:40]!r} is not a whole number of items; e.g. k=10")
        k = int(text) if len(text) <= 18 else 2**63  # above any night's k: refused so
        if k < 1:
            raise invalid("k", f"k={k}: ask for 1 or more items")
    model = given.get("model")
    if model == "":
        raise invalid("model", "model is empty; name a model (model=NAME) or leave it out")
    return k, model


def answer_of(found: Recommendations, rid: str) -> bytes:
    publication = found.publication
    payload = {
        "user_id": found.user_id,
        "model": publication.model,
        "night": publication.night,
        "version": publication.version,
        "published_at": publication.published_at,
        "fallback": "popularity" if found.fallback else False,
        "items": [
            {"item_id": i, "score": s} for i, s in zip(found.items, found.scores, strict=True)
        ],
        "request_id": rid,
    }
    return orjson.dumps(payload, option=_JSON_OPTIONS)


def failed_reply(rid: str) -> Reply:
    message = "the recommendation read failed; the error is logged with this request_id"
    body = {"code": "recommendations_failed", "message": message, "request_id": rid}
    return Reply(500, orjson.dumps(body), rid)


# -- the OpenAPI document ---------------------------------------------------------------------
DESCRIPTION = (
    "The user's top-k items of the night the nightly job last published (one night, "
    "never a mix of two), best first. `fallback` is false for the user's own list and "
    '"popularity" for a user the night did not score, who gets the popularity list.'
)
_ANSWER = {
    "type": "object",
    "required": "user_id model night version published_at fallback items request_id".split(),
    "properties": {
        "user_id": {"type": "integer"},
        "model": {"type": "string"},
        "night": {"type": "string", "format": "date"},
        "version": {"type": ["integer", "null"]},
        "published_at": {"type": "string", "format": "date-time"},
        "fallback": {"enum": [False, "popularity"]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["item_id", "score"],
                "properties": {"item_id": {"type": "integer"}, "score": {"type": "number"}},
            },
        },
        "request_id": {"type": "string"},
    },
}  # fmt: skip
OPERATION: dict[str, Any] = {
    "parameters": [
        {
            "name": "user_id",
            "in": "path",
            "required": True,
            "description": "the user's id (an int64)",
            "schema": {"type": "integer", "format": "int64"},
        },
        {
            "name": "k",
            "in": "query",
            "required": False,
            "description": "items to return, 1 to the k the night was published with "
            "(default: 10, or the night's k where it is smaller)",
            "schema": {"type": "integer", "minimum": 1},
        },
        {
            "name": "model",
            "in": "query",
            "required": False,
            "description": "whose lists (default: the newest published model)",
            "schema": {"type": "string", "minLength": 1},
        },
    ],
    "responses": {
        "200": json_ok("the user's list, or the popularity list (fallback)", _ANSWER),
        "403": error_response("the key's role or model list does not cover these lists"),
        "404": error_response(
            "nothing is published (for this model): run the nightly job, then ask again"
        ),
        "422": error_response(
            "the user id or k is not an integer, the user id is beyond int64, k < 1, k is "
            "above the items per user the night kept, or an unknown query parameter"
        ),
        "500": error_response("the read failed; the error is logged with the request_id"),
        "503": error_response("the online store is unavailable; retry shortly"),
    },
}
