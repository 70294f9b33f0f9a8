"""Batched functional models: every device's parameters are one row of an (N, d) tensor.

A model here is a list of layers over a flat parameter vector. ``forward``
runs all N devices' models at once with batched matrix products, so one
autograd call yields every device's gradient (devices share no parameter, so
the gradient of the summed losses splits exactly into per-device gradients).
Each layer is tagged as *representation* or *decision*: algorithms that treat
the two parts differently (HyperPrism's two exponents) take the split from
here, never from layer names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MODELS = ("logreg", "mlp")


@dataclass(frozen=True)
class Layer:
    """A fully connected layer y = x W^T + b; W is (out, in)."""

    fan_in: int
    fan_out: int
    part: str  # "representation" or "decision"

    @property
    def size(self) -> int:
        return self.fan_out * self.fan_in + self.fan_out


@dataclass(frozen=True)
class BatchedModel:
    """A stack of fully connected layers with ReLU between them, run for N devices at once."""

    name: str
    layers: tuple[Layer, ...]

    @property
    def dim(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def num_classes(self) -> int:
        return self.layers[-1].fan_out

    def part_mask(self, part: str) -> torch.Tensor:
        """Boolean (d,) mask of the coordinates that belong to ``part``."""
        return torch.cat([torch.full((layer.size,), layer.part == part) for layer in self.layers])

    def unflatten(self, params: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Views (W: (N, out, in), b: (N, out)) of each layer inside the flat (N, d) parameters."""
        n = params.shape[0]
        views, start = [], 0
        for layer in self.layers:
            w_end = start + layer.fan_out * layer.fan_in
            weight = params[:, start:w_end].view(n, layer.fan_out, layer.fan_in)
            bias = params[:, w_end:w_end + layer.fan_out]
            views.append((weight, bias))
            start = w_end + layer.fan_out
        return views

    def forward(self, params: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Logits (N, B, classes) for per-device inputs (N, B, features) or shared inputs (B, features)."""
        hidden = inputs
        views = self.unflatten(params)
        for index, (weight, bias) in enumerate(views):
            hidden = _batched_linear(hidden, weight, bias)
            if index < len(views) - 1:
                hidden = torch.relu(hidden)
        return hidden

    def init(self, num_devices: int, seed: int) -> torch.Tensor:
        """One seeded initial model (PyTorch's default uniform(+-1/sqrt(fan_in))) copied to every device."""
        generator = torch.Generator().manual_seed(seed)
        pieces = []
        for layer in self.layers:
            bound = 1.0 / math.sqrt(layer.fan_in)
            pieces.append((torch.rand(layer.size, generator=generator) * 2 - 1) * bound)
        return torch.cat(pieces).expand(num_devices, -1).clone()


def _batched_linear(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    n, fan_out, fan_in = weight.shape
    if inputs.dim() == 2:
        # Shared inputs (e.g. the test set): one GEMM against all devices' weights stacked.
        out = inputs @ weight.reshape(n * fan_out, fan_in).T
        return out.view(inputs.shape[0], n, fan_out).transpose(0, 1) + bias.unsqueeze(1)
    return torch.baddbmm(bias.unsqueeze(1), inputs, weight.transpose(1, 2))


def build_model(name: str, num_features: int, num_classes: int, hidden: int = 200) -> BatchedModel:
    """Logistic regression (HyperPrism's MNIST model) or a one-hidden-layer MLP."""
    if name == "logreg":
        return BatchedModel(name, (Layer(num_features, num_classes, "decision"),))
    if name == "mlp":
        return BatchedModel(name, (
            Layer(num_features, hidden, "representation"),
            Layer(hidden, num_classes, "decision"),
        ))
    raise ValueError(f"model.name: unknown model {name!r}; allowed: {', '.join(MODELS)}")
