"""Sealing a version registered before seals existed (``modelyard models seal``).

Seals themselves are made and checked by ``security/_seal.py``; the registry seals each
version as it registers it. This is the one way to seal an older version, and it checks
the version's files against its manifest first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from modelyard.backends.artifacts import check_stored_tree
from modelyard.backends.metadata import tables as t
from modelyard.errors import ConfigError, ConflictError
from modelyard.registry._refs import ModelRef
from modelyard.registry._versions import ModelVersion
from modelyard.security import record, seal

if TYPE_CHECKING:
    from modelyard.registry._registry import Registry


def seal_version(
    registry: Registry, ref: str | ModelRef, signing_key: Callable[[], bytes] | None
) -> ModelVersion:
    version = registry.get(ref)
    if signing_key is None:
        raise ConfigError("this registry has no signing key; open it from a workspace")
    if version.seal is not None:
        raise ConflictError(
            f"model {version.ref} is sealed already; a seal that does not verify means "
            "its record was changed: register the model again instead"
        )
    check_stored_tree(registry.artifacts, version.artifact)  # the store, not a local copy
    mv = t.model_versions
    with registry.metadata.write() as conn:
        conn.execute(
            mv.update()
            .where(mv.c.name == version.name, mv.c.version == version.version)
            .values(seal=seal(signing_key(), version.name, version.version, version.artifact))
        )
        record(conn, "model.seal", version.name, {"version": version.version})
    return registry.get(ModelRef(version.name, version=version.version))
