"""Dropout, with the probability always named: ``drop`` (PyTorch's p) or ``keep``
(the classic papers' p). A bare number is refused because it is ambiguous.

``scaling: inverted`` divides the survivors by keep while training (PyTorch);
``scaling: classic`` trains unscaled and multiplies by keep at inference.
At inference, after either, dropout itself is gone.
"""

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from netspec.kinds.base import Float, LayerArgs, Saved, Shape, ShapeError, numel


class Dropout(LayerArgs):
    op = "dropout"
    auto_name = "drop"
    ranks = (1, 2, 3)
    training_only = True
    samples = ({"drop": 0.1}, {"keep": 0.8, "scaling": "classic"},
               {"drop": 0.2, "kind": "channel"}, {"keep": 0.5, "kind": "channel",
                                                  "scaling": "classic"})
    shorthand_refusal = (
        "a bare dropout probability is ambiguous (PyTorch's p drops, the classic papers' "
        "p keeps): write {drop: P} or {keep: P}"
    )

    drop: Float | None = Field(default=None, ge=0, lt=1)
    keep: Float | None = Field(default=None, gt=0, le=1)
    #: element: each activation on its own; channel: whole feature maps
    kind: Literal["element", "channel"] = "element"
    scaling: Literal["inverted", "classic"] = "inverted"

    @model_validator(mode="after")
    def _exactly_one(self) -> "Dropout":
        if (self.drop is None) == (self.keep is None):
            raise ValueError("give exactly one of drop or keep")
        return self

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = self.check_input(inputs)
        if self.kind == "channel" and len(x) == 2:
            raise ShapeError("channel dropout drops whole feature maps, and tokens have "
                             "none: use kind: element", "kind")
        return x

    def inference_factor(self) -> float:
        return self.p_keep if self.scaling == "classic" else 1.0

    def inference_note(self) -> str:
        return ("inverted dropout is the identity at inference" if self.scaling == "inverted"
                else "classic dropout with keep=1 is the identity")

    @property
    def p_drop(self) -> float:
        return self.drop if self.drop is not None else 1.0 - float(self.keep)  # type: ignore[arg-type]

    @property
    def p_keep(self) -> float:
        return self.keep if self.keep is not None else 1.0 - float(self.drop)  # type: ignore[arg-type]

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        if self.p_drop == 0:
            return Saved(inputs=())
        # the mask it multiplied by, in the activations' dtype (torch's CPU dropout and
        # ClassicDropout; CUDA's fused kernel keeps a bool mask, a quarter of this)
        per = inputs[0][0] if self.kind == "channel" and len(inputs[0]) == 3 else numel(out)
        return Saved(inputs=(), extra=((per, None, True),))


class DropPath(LayerArgs):
    """Stochastic depth (Huang et al., 2016): while training, each sample's whole tensor
    is dropped with probability ``drop`` and the survivors divided by keep (torchvision's
    StochasticDepth in "row" mode); at inference, the identity. Put it last in a
    residual body to drop that body for a sample."""

    op = "drop_path"
    auto_name = "drop_path"
    ranks = (1, 2, 3)
    training_only = True
    shorthand_refusal = Dropout.shorthand_refusal
    samples = ({"drop": 0.1}, {"keep": 0.9}, {"drop": 0.0})

    drop: Float | None = Field(default=None, ge=0, lt=1)
    keep: Float | None = Field(default=None, gt=0, le=1)

    def inference_note(self) -> str:
        return "stochastic depth is the identity at inference"

    @model_validator(mode="after")
    def _exactly_one(self) -> "DropPath":
        if (self.drop is None) == (self.keep is None):
            raise ValueError("give exactly one of drop or keep")
        return self

    @property
    def p_drop(self) -> float:
        return self.drop if self.drop is not None else 1.0 - float(self.keep)  # type: ignore[arg-type]

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        if self.p_drop == 0:
            return Saved(inputs=())  # the identity, as torchvision's StochasticDepth
        return Saved(inputs=(), extra=((1, None, True),))  # one keep factor per sample
