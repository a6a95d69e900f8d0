"""A timm member's own classifier: an MLP head (`head: {hidden, dropout, activation}`) and attribute heads
(`competition.attributes`).

`install_head` replaces the module `model.get_classifier()` returns, in place on its parent, so timm's
`group_matcher` / `param_groups_layer_decay` (layer decay, head_lr: kit.train.recipe) and kit's
`head_parameter_names` (what freeze_epochs trains alone) see the new head where the old one was.

Attribute heads: one head per attribute (each the MLP when `hidden` is set; no shared trunk; a member with
`head: {attributes: false}` keeps one head over the classes), and the class score is
sum_a log_softmax(head_a)[value_a(class)]. The softmax over these scores is the product of the attribute
probabilities renormalised over the classes that exist, and the logits stay [B, K]: losses, blends, submissions
and predict see an ordinary K-class member. When the classes form the full product, log_softmax(score) ==
score, so cross-entropy equals the sum of the per-attribute cross-entropies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kit.config.attributes import AttributeCodes
from kit.config.schema import HeadConfig
from kit.errors import KitError


@dataclass(frozen=True)
class HeadSpec:
    """What replaces timm's classifier: the MLP shape and, for attribute heads, each class's value codes."""

    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    attributes: AttributeCodes | None = None
    activation: str = "gelu"  # after each hidden Linear: a key of ACTIVATIONS

    @classmethod
    def of(cls, head: HeadConfig | None, attributes: AttributeCodes | None) -> HeadSpec | None:
        """None when the member keeps timm's own linear classifier, exactly as before: no head, or one that
        changes nothing (no hidden layer, no dropout, no attribute heads)."""
        h = head or HeadConfig()
        codes = attributes if h.attributes else None  # head.attributes: false opts a member out
        if codes is None and not h.hidden and h.dropout == 0:
            return None
        return cls(tuple(h.hidden), h.dropout, codes, h.activation)

    def to_json(self) -> dict[str, Any]:
        return {
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "activation": self.activation,
            "attributes": None if self.attributes is None else self.attributes.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> HeadSpec | None:
        if d is None:
            return None
        a = d.get("attributes")
        codes = None
        if a is not None:
            codes = AttributeCodes(
                tuple(a["names"]),
                tuple(tuple(v) for v in a["values"]),
                tuple(tuple(int(i) for i in c) for c in a["codes"]),
            )
        return cls(
            tuple(int(h) for h in d.get("hidden") or ()),
            float(d.get("dropout", 0.0)),
            codes,
            str(d.get("activation", "gelu")),
        )


ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def mlp(
    in_features: int, out_features: int, hidden: tuple[int, ...], dropout: float, activation: str = "gelu"
) -> nn.Sequential:
    """[Dropout, Linear, activation] per hidden width, then Dropout, Linear."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Dropout(dropout), nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers += [nn.Dropout(dropout), nn.Linear(width, out_features)]
    return nn.Sequential(*layers)


class AttributeHead(nn.Module):
    """One head per attribute; class scores sum_a log_softmax(head_a(x))[codes[:, a]]: [B, K]."""

    codes: torch.Tensor

    def __init__(self, in_features: int, spec: HeadSpec) -> None:
        super().__init__()
        assert spec.attributes is not None
        a = spec.attributes
        self.heads = nn.ModuleList(
            mlp(in_features, len(v), spec.hidden, spec.dropout, spec.activation) for v in a.values
        )
        # derived from the config, not learned: kept out of the state dict
        self.register_buffer("codes", torch.tensor(a.codes, dtype=torch.long), persistent=False)

    def attribute_log_probs(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.log_softmax(head(x), dim=-1) for head in self.heads]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score: torch.Tensor | None = None
        for a, lp in enumerate(self.attribute_log_probs(x)):
            s = lp.index_select(-1, self.codes[:, a])
            score = s if score is None else score + s
        assert score is not None
        return score


def build_head(in_features: int, n_classes: int, spec: HeadSpec) -> nn.Module:
    if spec.attributes is not None:
        if len(spec.attributes.codes) != n_classes:
            raise KitError(
                f"competition.attributes: codes for {len(spec.attributes.codes)} classes, but the member "
                f"predicts {n_classes}; give every class its attribute values"
            )
        return AttributeHead(in_features, spec)
    return mlp(in_features, n_classes, spec.hidden, spec.dropout, spec.activation)


def classifier_path(model: nn.Module) -> str:
    """The dotted name of the module `model.get_classifier()` returns."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    for n, m in model.named_modules():
        if head is not None and m is head and n:
            return n
    raise KitError(
        f"timm model {type(model).__name__} has no classifier module kit can find (get_classifier); "
        "remove head (and competition.attributes) for this member"
    )


def install_head(model: nn.Module, spec: HeadSpec, n_classes: int) -> None:
    """Replace timm's linear classifier with spec's head, on the same parent under the same name."""
    path = classifier_path(model)
    old = model.get_submodule(path)
    if not isinstance(old, nn.Linear):
        raise KitError(
            f"its classifier '{path}' is a {type(old).__name__}, not a Linear layer; head (and "
            "competition.attributes) replace linear classifiers only: remove head or pick another model"
        )
    parent_name, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, build_head(old.in_features, n_classes, spec))
