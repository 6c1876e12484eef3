"""API keys: created once, shown once, kept only as a salted hash.

A key reads ``myd_<id>_<secret>``: the id (12 hex digits) names the key in lists, the
audit log and error messages; the secret is 256 random bits. The store keeps
``HMAC-SHA256(salt, secret)`` with a random salt per key. A slow password hash (scrypt,
argon2) protects guessable passwords; a 256-bit random secret cannot be guessed, so it
would only add milliseconds to the first request of each key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import select, update

from modelyard._time import now_us, to_datetime, to_us
from modelyard.backends.metadata import MetadataStore, tables
from modelyard.errors import ConfigError, ConflictError, NotFoundError
from modelyard.security._audit import record

Role = Literal["admin", "predictor", "reader", "trainer"]
ROLES: tuple[Role, ...] = get_args(Role)
PREFIX = "myd_"
_KEY = re.compile(r"myd_([0-9a-f]{12})_([A-Za-z0-9_\-]{20,100})")
MAX_LIFETIME = timedelta(days=3650)  # longer is "never" in a form that overflows dates
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@\-]{0,99}")


@dataclass(frozen=True)
class ApiKey:
    """A key as stored: everything but its secret."""

    key_id: str
    name: str
    role: Role
    models: tuple[str, ...] | None  # None: every model
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    rate: float | None  # requests per second; None: no limit
    salt: str
    hash: str

    def state(self, now: int | None = None) -> Literal["active", "revoked", "expired"]:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and to_us(self.expires_at) <= (now or now_us()):
            return "expired"
        return "active"

    def covers(self, model: str) -> bool:
        return self.models is None or model in self.models

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(secret_hash(self.salt, secret), self.hash)

    def describe(self) -> str:
        return f"key {self.key_id} ({self.name}, {self.role})"


def secret_hash(salt: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def split_key(text: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    found = _KEY.fullmatch(text)
    return None if found is None else (found[1], found[2])


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}; pick one")
    return role


def create_key(
    metadata: MetadataStore,
    role: str,
    *,
    name: str | None = None,
    models: Sequence[str] | None = None,
    expires: timedelta | None = None,
    rate: float | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its plain text, which is shown once and stored nowhere."""
    checked = check_role(role)
    key_id = secrets.token_hex(6)
    name = name or f"{checked}-{key_id}"
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"key name {name!r}: use letters, digits and _ . @ - (at most 100 characters)"
        )
    if models is not None:
        models = sorted({m.strip() for m in models if m.strip()})
        if not models:
            raise ConfigError("--models is empty; name at least one model, or leave it out")
    if expires is not None and not timedelta(0) < expires <= MAX_LIFETIME:
        raise ConfigError(
            f"--expires {expires.days}d: a key lives from 1 second to "
            f"{MAX_LIFETIME.days} days; pick a lifetime in that range and rotate"
        )
    if rate is not None and not rate > 0:
        raise ConfigError(f"--rate {rate}: expected a positive number of requests per second")
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    now = now_us()
    row: dict[str, Any] = {
        "key_id": key_id,
        "name": name,
        "role": checked,
        "models": None if models is None else list(models),
        "salt": salt,
        "hash": secret_hash(salt, secret),
        "created_at": now,
        "expires_at": None if expires is None else now + int(expires.total_seconds() * 1e6),
        "revoked_at": None,
        "rate": rate,
    }
    k = tables.api_keys
    with metadata.write() as conn:
        taken = conn.execute(
            select(k.c.key_id).where(k.c.name == name, k.c.revoked_at.is_(None))
        ).first()
        if taken is not None:
            raise ConflictError(
                f"an active key is already named {name!r} ({taken.key_id}); pick another "
                f"name or revoke it with 'modelyard keys revoke {taken.key_id}'"
            )
        row["created_by"] = record(
            conn, "key.create", key_id, {"name": name, "role": checked, "models": row["models"]}
        )
        conn.execute(k.insert(), row)
    return _key(row), f"{PREFIX}{key_id}_{secret}"


def list_keys(metadata: MetadataStore) -> list[ApiKey]:
    """Every key, newest first (revoked and expired ones too: the audit trail names them)."""
    k = tables.api_keys
    with metadata.read() as conn:
        rows = conn.execute(select(k).order_by(k.c.created_at.desc())).mappings().all()
    return [_key(dict(r)) for r in rows]


def revoke_key(metadata: MetadataStore, key: str) -> ApiKey:
    """Revoke ``key`` (its id or its name); servers refuse it within their poll interval."""
    k = tables.api_keys
    now = now_us()
    with metadata.write() as conn:
        row = conn.execute(select(k).where(k.c.key_id == key)).mappings().first()
        if row is None:  # by name: the active key, else the newest one so named
            row = (
                conn.execute(
                    select(k)
                    .where(k.c.name == key)
                    .order_by(k.c.revoked_at.is_not(None), k.c.created_at.desc())
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError(f"no key has id or name {key!r}; 'modelyard keys list' shows them")
        if row["revoked_at"] is not None:
            return _key(dict(row))
        conn.execute(update(k).where(k.c.key_id == row["key_id"]).values(revoked_at=now))
        record(conn, "key.revoke", row["key_id"], {"name": row["name"], "role": row["role"]})
    return _key({**row, "revoked_at": now})


def _key(row: dict[str, Any]) -> ApiKey:
    models = row["models"]
    return ApiKey(
        key_id=row["key_id"],
        name=row["name"],
        role=row["role"],
        models=None if models is None else tuple(models),
        created_at=to_datetime(row["created_at"]),
        created_by=row["created_by"],
        expires_at=to_datetime(row["expires_at"]),
        revoked_at=to_datetime(row["revoked_at"]),
        rate=row["rate"],
        salt=row["salt"],
        hash=row["hash"],
    )
