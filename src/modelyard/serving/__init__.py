"""Serving: the model server (FastAPI on uvicorn) built from model signatures."""

from modelyard.serving._run import serve
from modelyard.serving.app import create_app, request_id

__all__ = ["create_app", "request_id", "serve"]
