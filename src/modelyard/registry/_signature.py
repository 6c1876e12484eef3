"""A model's signature: the input and output schemas that serving and monitoring rely on."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from modelyard.contracts import Schema


class Signature(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: Schema
    outputs: Schema

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Signature:
        return cls.model_validate(data)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)
