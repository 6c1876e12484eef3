"""Seals on model versions: who can write the metadata store still cannot swap a model.

Loading a model runs code (a pickle runs whatever its author put in it), so the
registry's record of which files make a version is a trust boundary. When a version is
registered its seal, ``HMAC-SHA256(key, name, version, manifest digest)``, is stored
with it; the manifest names the digest of every file. The key is the workspace's
signing key, which lives outside the metadata store (``workspace_secret``), so an
attacker who can edit the database (point a version at other files, or clear a seal)
cannot make a seal that verifies. ``load`` checks the seal before it reads a file and
every file's digest before any flavor unpickles it, from the store and from the local
cache alike.
"""

from __future__ import annotations

import hashlib
import hmac

from modelyard.errors import IntegrityError

_SCHEME = "hmac-sha256:"


def seal(key: bytes, name: str, version: int, artifact: str) -> str:
    message = f"{name}\n{version}\n{artifact}".encode()
    return _SCHEME + hmac.new(key, message, hashlib.sha256).hexdigest()


def check_seal(key: bytes, name: str, version: int, artifact: str, found: str | None) -> None:
    """Raise ``IntegrityError`` unless ``found`` is the seal of this version and manifest."""
    if found is None:
        raise IntegrityError(
            f"model {name}/{version} has no seal, so its files cannot be trusted; if it was "
            "registered before seals, check it and run 'modelyard models seal "
            f"{name}/{version}'; if not, its record was changed: do not load it"
        )
    if not hmac.compare_digest(seal(key, name, version, artifact), found):
        raise IntegrityError(
            f"model {name}/{version}: its seal does not match its files ({artifact}); its "
            "record was changed after it was registered, or it was sealed with another "
            "signing key (set security.signing_key to the key of the host that registered "
            "it, or restore .modelyard/secrets/signing.key if it was deleted and remade); "
            "otherwise do not load it"
        )
