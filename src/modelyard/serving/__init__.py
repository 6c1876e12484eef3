"""Serving: the model server (REST, OIP v2 REST and gRPC) built from model signatures."""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.serving._auth import (
        Guard,
        actor,
        request_key,
        request_session,
    )
    from modelyard.serving._http import (
        request_id,
    )
    from modelyard.serving._options import (
        ABTest,
        Canary,
        ServeOptions,
        Shadow,
        load_spec,
        parse_options,
    )
    from modelyard.serving._recommendation_lists import RecommendationLists
    from modelyard.serving._recommendation_rows import Publication, Recommendations
    from modelyard.serving._run import (
        check_port,
        is_loopback,
        serve,
    )
    from modelyard.serving._score import (
        ScoreResult,
        score,
    )
    from modelyard.serving.app import (
        create_app,
    )

__all__ = [
    "ABTest",
    "Canary",
    "Guard",
    "Publication",
    "RecommendationLists",
    "Recommendations",
    "ScoreResult",
    "ServeOptions",
    "Shadow",
    "actor",
    "check_port",
    "create_app",
    "is_loopback",
    "load_spec",
    "parse_options",
    "request_id",
    "request_key",
    "request_session",
    "score",
    "serve",
]

_EXPORTS = {
    "modelyard.serving._auth": [
        "Guard",
        "actor",
        "request_key",
        "request_session",
    ],
    "modelyard.serving._http": [
        "request_id",
    ],
    "modelyard.serving._options": [
        "ABTest",
        "Canary",
        "ServeOptions",
        "Shadow",
        "load_spec",
        "parse_options",
    ],
    "modelyard.serving._recommendation_lists": ["RecommendationLists"],
    "modelyard.serving._recommendation_rows": ["Publication", "Recommendations"],
    "modelyard.serving._run": [
        "check_port",
        "is_loopback",
        "serve",
    ],
    "modelyard.serving._score": [
        "ScoreResult",
        "score",
    ],
    "modelyard.serving.app": [
        "create_app",
    ],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
