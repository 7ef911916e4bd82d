"""A network of your own, as PyTorch code, for ``netspec import`` (docs/tutorial.md,
section 9): a stem, two stages of a residual block class, global pooling and a linear
head for the 8×8 digits.

    python examples/my_net.py     # the network as PyTorch sees it: parameters, output shape
    cd examples && netspec import my_net:make --input 1,8,8 -o my_net.yaml \
        --weights-out my_net.safetensors
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """Two 3×3 convs with BatchNorm and a shortcut: the identity, or a strided 1×1
    projection where the shape changes."""

    def __init__(self, c_in: int, c: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.down = None
        if stride != 1 or c_in != c:
            self.down = nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False),
                                      nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class Net(nn.Module):
    def __init__(self, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.stage1 = nn.Sequential(Block(width, width), Block(width, width))
        self.stage2 = nn.Sequential(Block(width, 2 * width, 2), Block(2 * width, 2 * width))
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stage1(self.stem(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.head(self.dropout(x))


def make(classes: int = 10, width: int = 16) -> Net:
    return Net(classes, width)


if __name__ == "__main__":
    net = make().eval()
    logits = net(torch.randn(2, 1, 8, 8))
    print(f"{sum(p.numel() for p in net.parameters()):,} parameters; "
          f"a batch of 2 digits gives logits of shape {tuple(logits.shape)}")
