"""MLflow's page tokens: here an opaque base64 of the next offset."""

from __future__ import annotations

import base64
import json
from typing import Any

from modelyard.server._errors import invalid


def page_token(token: Any) -> int:
    if not token:
        return 0
    try:
        offset = int(json.loads(base64.b64decode(str(token)))["offset"])
    except (ValueError, KeyError, TypeError):
        raise invalid(f"page_token {token!r} is not one this server gave out") from None
    if offset < 0:
        raise invalid(f"page_token {token!r} is not one this server gave out")
    return offset


def page(name: str, items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    """``items`` holds up to ``limit + 1`` entries: one more means there is a next page."""
    out: dict[str, Any] = {name: items[:limit]}
    if len(items) > limit:
        token = json.dumps({"offset": offset + limit}).encode()
        out["next_page_token"] = base64.b64encode(token).decode()
    return out
