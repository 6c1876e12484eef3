"""The workspace's own secret keys (signing, PII hashing), kept outside the metadata store.

A key is the setting's value when one is set (an ``env:`` or ``file:`` reference, so
that every host that shares a metadata store uses the same key), else a random key in
``.modelyard/secrets/NAME.key``, made on first use, readable by its owner only.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from modelyard.errors import ConfigError

MIN_LENGTH = 32


def workspace_secret(state_dir: Path, name: str, configured: str, what: str) -> bytes:
    """The key ``name``: ``configured`` (the setting ``what``'s value) or the key file."""
    if configured:
        if len(configured) < MIN_LENGTH:
            raise ConfigError(
                f"{what} is {len(configured)} characters; a key needs at least {MIN_LENGTH}: "
                "make one with python3 -c 'import secrets; print(secrets.token_hex(32))'"
            )
        return configured.encode()
    path = state_dir / "secrets" / f"{name}.key"
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return _read(path)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
        f.flush()
        os.fsync(f.fileno())
    return _read(path)


def _read(path: Path) -> bytes:
    text = path.read_text().strip()
    if len(text) < MIN_LENGTH:  # a torn write of a crashed first use: never a short key
        raise ConfigError(
            f"{path} holds no valid key ({len(text)} characters); if nothing was signed or "
            "hashed with it yet, delete it and retry"
        )
    return text.encode()
