"""Security: API keys and roles, the audit log, seals on model versions, workspace keys.

Keys are created and revoked from the command line (``modelyard keys``) and checked by
the server (``KeyRing``: HTTP middleware and gRPC interceptor share its rules). Every
admin action is recorded with who took it (``acting_as``) and is listed by
``modelyard audit``. Names load on first use: the command line names its actor at
start-up without loading the database layer.
"""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.security._actor import Actor, acting_as, command_line_actor, current_actor
    from modelyard.security._audit import SIGN_OUT, AuditEvent, audit_events, record, record_session
    from modelyard.security._key_files import workspace_secret
    from modelyard.security._keyring import KeyRing, bearer
    from modelyard.security._keys import (
        PREFIX,
        ROLES,
        ApiKey,
        Role,
        check_role,
        create_key,
        list_keys,
        revoke_key,
    )
    from modelyard.security._roles import GRANTS, Permission
    from modelyard.security._seal import check_seal, seal
    from modelyard.security._sessions import COOKIE, Sessions

__all__ = [
    "COOKIE",
    "GRANTS",
    "PREFIX",
    "ROLES",
    "SIGN_OUT",
    "Actor",
    "ApiKey",
    "AuditEvent",
    "KeyRing",
    "Permission",
    "Role",
    "Sessions",
    "acting_as",
    "audit_events",
    "bearer",
    "check_role",
    "check_seal",
    "command_line_actor",
    "create_key",
    "current_actor",
    "list_keys",
    "record",
    "record_session",
    "revoke_key",
    "seal",
    "workspace_secret",
]

_EXPORTS = {
    "modelyard.security._actor": ["Actor", "acting_as", "command_line_actor", "current_actor"],
    "modelyard.security._audit": [
        "SIGN_OUT",
        "AuditEvent",
        "audit_events",
        "record",
        "record_session",
    ],
    "modelyard.security._key_files": ["workspace_secret"],
    "modelyard.security._keyring": ["KeyRing", "bearer"],
    "modelyard.security._keys": [
        "PREFIX",
        "ROLES",
        "ApiKey",
        "Role",
        "check_role",
        "create_key",
        "list_keys",
        "revoke_key",
    ],
    "modelyard.security._roles": ["GRANTS", "Permission"],
    "modelyard.security._seal": ["check_seal", "seal"],
    "modelyard.security._sessions": ["COOKIE", "Sessions"],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
