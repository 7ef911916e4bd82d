"""Channel split: one tensor into named parts (ShuffleNetV2's halves, YOLOv8's C2f).

``split: {parts: 2, as: x}`` becomes one Graph node per part, ``x.0`` and ``x.1``, all of
op ``split`` with the same options; each node knows its part by ``index``. After a split
the current tensor is the last part.
"""

from collections.abc import Sequence

from pydantic import PrivateAttr, model_validator

from netspec.kinds.base import LayerArgs, PosInt, Saved, Shape, ShapeError


class Split(LayerArgs):
    op = "split"
    auto_name = "split"
    view = True  # torch.narrow: each part is a view of the input
    shorthand = "parts"
    samples = ({"parts": 2}, {"parts": 1})

    #: equal parts
    parts: PosInt | None = None
    #: or the channels of each part, adding up to the input's
    sizes: list[PosInt] | None = None
    _index: int = PrivateAttr(default=-1)

    @model_validator(mode="after")
    def _exactly_one(self) -> "Split":
        if (self.parts is None) == (self.sizes is None):
            raise ValueError("give exactly one of parts or sizes")
        if self.sizes is not None and not self.sizes:
            raise ValueError("sizes needs at least one part")
        return self

    @property
    def index(self) -> int:
        """Which part this node is (the last one until resolve says otherwise)."""
        return self._index

    def part(self, i: int) -> "Split":
        """These options as the node of part ``i``."""
        node = self.model_copy()
        node._index = i
        return node

    def part_sizes(self, channels: int) -> list[int]:
        if self.sizes is not None:
            if sum(self.sizes) != channels:
                raise ShapeError(f"sizes {self.sizes} add up to {sum(self.sizes)}, not the "
                                 f"input's {channels} channels", "sizes")
            return list(self.sizes)
        assert self.parts is not None
        if channels % self.parts:
            raise ShapeError(f"parts={self.parts} does not divide the {channels} channels",
                             "parts")
        return [channels // self.parts] * self.parts

    def bounds(self, channels: int) -> tuple[int, int]:
        """The channel range [start, stop) of this node's part."""
        sizes = self.part_sizes(channels)
        start = sum(sizes[:self.index])
        return start, start + sizes[self.index]

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = self.check_input(inputs)
        return (self.part_sizes(x[0])[self.index], *x[1:])

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())
