"""The dashboard: runs, models and more in the browser, rendered on the server.

``create_ui_app(ws)`` is what ``modelyard ui`` serves. Pages are Jinja2 templates with
autoescape on and server-drawn SVG charts (``_charts.py``), so nothing is built with
Node and every asset comes from this package: the dashboard works offline.
"""

from modelyard.ui._app import create_ui_app, mount_on_server

__all__ = ["create_ui_app", "mount_on_server"]
