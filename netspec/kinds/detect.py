"""Detection-head decoding: the distribution focal loss's expectation (YOLOv8's DFL).

A box side is predicted as a distribution over ``bins`` distances; DFL decodes it as the
expected distance: softmax over each side's bins, then Σ p_k·k. The weights 0 … bins−1
are fixed: counted as parameters (Ultralytics registers them as a frozen 1×1 conv), never
trained.
"""

from collections.abc import Sequence

from pydantic import Field

from netspec.kinds.base import LayerArgs, Shape, ShapeError


class DFL(LayerArgs):
    op = "dfl"
    autocast = "widen"
    auto_name = "dfl"
    shorthand = "bins"
    ranks = (3,)
    fixed_params = True
    samples = ({"bins": 2}, {"bins": 1})

    bins: int = Field(default=16, ge=1, le=1024)

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.check_input(inputs)
        if c != 4 * self.bins:
            raise ShapeError(f"dfl decodes 4 box sides of {self.bins} bins each from "
                             f"{4 * self.bins} channels, got {c}", "bins")
        return (4, h, w)

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {"weight": (1, self.bins, 1, 1)}

    def formula(self, inputs: Sequence[Shape]) -> str:
        return f"{self.bins} fixed"
