"""Serving: the model server (REST, OIP v2 REST and gRPC) built from model signatures."""

from modelyard.serving._http import request_id
from modelyard.serving._options import (
    ABTest,
    Canary,
    ServeOptions,
    Shadow,
    load_spec,
    parse_options,
)
from modelyard.serving._run import check_port, serve
from modelyard.serving._score import ScoreResult, score
from modelyard.serving.app import create_app

__all__ = [
    "ABTest",
    "Canary",
    "ScoreResult",
    "ServeOptions",
    "Shadow",
    "check_port",
    "create_app",
    "load_spec",
    "parse_options",
    "request_id",
    "score",
    "serve",
]
