"""Security: API keys and roles, the audit log, seals on model versions, workspace keys.

Keys are created and revoked from the command line (``modelyard keys``) and checked by
the server (``KeyRing``: HTTP middleware and gRPC interceptor share its rules). Every
admin action is recorded with who took it (``acting_as``) and is listed by
``modelyard audit``.
"""

from modelyard.security._audit import (
    Actor,
    AuditEvent,
    acting_as,
    audit_events,
    command_line_actor,
    current_actor,
    record,
)
from modelyard.security._key_files import workspace_secret
from modelyard.security._keyring import KeyRing, bearer, missing_key
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

__all__ = [
    "GRANTS",
    "PREFIX",
    "ROLES",
    "Actor",
    "ApiKey",
    "AuditEvent",
    "KeyRing",
    "Permission",
    "Role",
    "acting_as",
    "audit_events",
    "bearer",
    "check_role",
    "check_seal",
    "command_line_actor",
    "create_key",
    "current_actor",
    "list_keys",
    "missing_key",
    "record",
    "revoke_key",
    "seal",
    "workspace_secret",
]
