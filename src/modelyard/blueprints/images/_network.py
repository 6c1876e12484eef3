"""The network: the classic Keras MNIST CNN (two 3x3 convolutions, max-pooling, dropout,
a 128-unit dense layer), with its first convolution's filter count as ``filters``.

At ``filters=32`` on 28x28 grey images it has 1,199,882 parameters, the model the
issue's plain-PyTorch numbers were measured with.
"""

from __future__ import annotations

import torch
from torch import nn


class DigitNet(nn.Module):
    def __init__(
        self,
        channels: int = 1,
        classes: int = 10,
        filters: int = 32,
        height: int = 28,
        width: int = 28,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, filters, 3),
            nn.ReLU(),
            nn.Conv2d(filters, 2 * filters, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
        )
        flat = 2 * filters * ((height - 4) // 2) * ((width - 4) // 2)
        self.head = nn.Sequential(
            nn.Linear(flat, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
