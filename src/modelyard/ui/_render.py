"""Templates: Jinja2 with autoescape on, loaded from the package (no build step)."""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from modelyard.ui._viewer import current_viewer


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("modelyard.ui", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        undefined=StrictUndefined,  # a misspelt variable is an error, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["num"] = _num
    return env


def render(template: str, **context: Any) -> str:
    context.setdefault("viewer", current_viewer())  # who looks: base.html's sign-out
    return environment().get_template(template).render(**context)


def _when(value: Any) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
