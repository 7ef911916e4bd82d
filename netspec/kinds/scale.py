"""Layer scale (Touvron et al., 2021; ConvNeXt): y = γ·x with a learned γ per channel,
started small (1e-6) so a residual body begins near the identity."""

from collections.abc import Sequence

from pydantic import Field

from netspec.kinds.base import Float, LayerArgs, Shape


class LayerScale(LayerArgs):
    op = "layer_scale"
    autocast = "widen"
    auto_name = "scale"
    ranks = (1, 2, 3)
    shorthand = "init"
    fresh_output = True
    channel_scale = True
    samples = ({}, {"init": 0.1, "register_first": True}, {"flat": True})

    init: Float = Field(default=1e-6, allow_inf_nan=False)
    #: register γ before every other tensor of the enclosing scope, as torchvision's
    #: ConvNeXt block holds it as a parameter of the block itself (it still computes here)
    register_first: bool = False
    #: on a map, γ as a 1-D [C] tensor (timm's ConvNeXt ``gamma``) rather than
    #: [C, 1, 1] (torchvision's): the same values, the shape a weights file pairs by
    flat: bool = False

    def registers_first(self) -> bool:
        return self.register_first

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        x = inputs[0]
        if len(x) == 2:
            return {"weight": (x[1],)}  # a token's D features
        # [C, 1, 1] on images: torchvision's shape, so its weights load by position
        return {"weight": (x[0], 1, 1) if len(x) == 3 and not self.flat else (x[0],)}

    def formula(self, inputs: Sequence[Shape]) -> str:
        return f"{self.param_shapes(inputs)['weight'][0]}"
