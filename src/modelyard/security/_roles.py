"""What each role may do: the one table the HTTP middleware and the gRPC interceptor share.

A route (or RPC) declares one ``Permission``; a key's role grants a set of them, and a
key limited to some models passes a model-scoped permission only for those models.

    permission  what it covers                                    roles
    public      liveness and readiness probes                     anyone, no key
    model       one model's metadata and readiness                reader, predictor, admin
    predict     predict, infer, feedback, feature lookups         predictor, admin
    read        metadata, metrics, API docs, reports, dashboard   reader, trainer, admin
    track       log runs and artifacts, register model versions   trainer, admin
                (the team server: ``modelyard server``)
    admin       alias moves, rollback, traffic, keys              admin
"""

from __future__ import annotations

from typing import Literal

from modelyard.security._keys import ApiKey, Role

Permission = Literal["public", "model", "predict", "read", "track", "admin"]

GRANTS: dict[Role, frozenset[Permission]] = {
    "admin": frozenset({"public", "model", "predict", "read", "track", "admin"}),
    "predictor": frozenset({"public", "model", "predict"}),
    "reader": frozenset({"public", "model", "read"}),
    "trainer": frozenset({"public", "model", "read", "track"}),
}


def refusal(key: ApiKey, permission: Permission, model: str | None) -> str | None:
    """Why ``key`` may not do what needs ``permission`` (on ``model``), or None if it may.

    The reason is one of ``wrong_role``, ``wrong_model`` (for metrics and the message).
    """
    if permission not in GRANTS[key.role]:
        return "wrong_role"
    if model is not None and key.role != "admin" and not key.covers(model):
        return "wrong_model"
    return None


def needed_roles(permission: Permission) -> list[Role]:
    return [role for role, granted in GRANTS.items() if permission in granted]
