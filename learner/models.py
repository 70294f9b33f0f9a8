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
import torch.nn.functional as F
from torch import nn

from learner.plugins import load_plugin

MODELS = ("logreg", "mlp", "cnn", "cnn-small")
SMALL_CNN_CHANNELS = (4, 8)  # cnn-small: sized so one model is a logistic regression's bytes on the air
SMALL_CNN_HIDDEN = 16


@dataclass(frozen=True)
class Layer:
    """A fully connected layer y = x W^T + b; W is (out, in)."""

    fan_in: int
    fan_out: int
    part: str  # "representation" or "decision"

    @property
    def size(self) -> int:
        return self.fan_out * self.fan_in + self.fan_out

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.fan_out, self.fan_in)


@dataclass(frozen=True)
class ConvLayer:
    """A k x k convolution with 'same' zero padding, then ReLU and 2 x 2 max-pooling; W is (out, in, k, k)."""

    in_channels: int
    out_channels: int
    kernel: int
    part: str

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel * self.kernel

    @property
    def fan_out(self) -> int:
        return self.out_channels

    @property
    def size(self) -> int:
        return self.out_channels * self.fan_in + self.out_channels

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels, self.kernel, self.kernel)


@dataclass(frozen=True)
class BatchedModel:
    """Convolutions (if any), then fully connected layers with ReLU between them, run for N devices at once.

    Convolutions of all devices run as one grouped convolution (groups = N): the
    batch axis carries the samples and the channel axis carries device-major
    blocks of channels, so device j's filters only ever see device j's channels.
    """

    name: str
    layers: tuple[Layer | ConvLayer, ...]
    input_shape: tuple[int, int, int] | None = None  # (channels, height, width) when there are convolutions

    @property
    def dim(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def num_classes(self) -> int:
        return self.layers[-1].fan_out

    def activations_per_input(self, num_devices: int) -> int:
        """Floats of the widest layer output one input produces across ``num_devices`` models."""
        if self.input_shape is None:
            return num_devices * max(layer.fan_out for layer in self.layers)
        _, height, width = self.input_shape
        widest = 0
        for layer in self.layers:
            if isinstance(layer, ConvLayer):
                widest = max(widest, layer.out_channels * height * width)  # before its 2 x 2 max-pool
                height, width = height // 2, width // 2
            else:
                widest = max(widest, layer.fan_out)
        return num_devices * widest

    def part_mask(self, part: str) -> torch.Tensor:
        """Boolean (d,) mask of the coordinates that belong to ``part``."""
        return torch.cat([torch.full((layer.size,), layer.part == part) for layer in self.layers])

    def unflatten(self, params: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Views (W: (N, *weight_shape), b: (N, out)) of each layer inside the flat (N, d) parameters."""
        n = params.shape[0]
        views, start = [], 0
        for layer in self.layers:
            w_end = start + layer.fan_out * layer.fan_in
            weight = params[:, start:w_end].view(n, *layer.weight_shape)
            bias = params[:, w_end:w_end + layer.fan_out]
            views.append((weight, bias))
            start = w_end + layer.fan_out
        return views

    def forward(self, params: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Logits (N, B, classes) for per-device inputs (N, B, features) or shared inputs (B, features)."""
        return self.forward_layers(self.unflatten(params), inputs)

    def forward_layers(self, views: list[tuple[torch.Tensor, torch.Tensor]], inputs: torch.Tensor) -> torch.Tensor:
        """``forward`` on per-layer (W, b) tensors, e.g. separate autograd leaves (see devices.batch_gradients)."""
        hidden = inputs
        n = views[0][0].shape[0]
        convolutions = sum(isinstance(layer, ConvLayer) for layer in self.layers)
        if convolutions:
            hidden = _batched_convolutions(self.layers[:convolutions], views[:convolutions], inputs,
                                           self.input_shape, n)
        dense = views[convolutions:]
        for index, (weight, bias) in enumerate(dense):
            hidden = _batched_linear(hidden, weight, bias)
            if index < len(dense) - 1:
                hidden = torch.relu(hidden)
        return hidden

    def device_module(self, flat: torch.Tensor) -> nn.Sequential:
        """One device's model (its (d,) parameters copied) as ordinary torch.nn layers taking flat inputs (B, features):
        for exporting a trained device, and for the per-device loop `make bench` compares the batched engine with."""
        modules: list[nn.Module] = [] if self.input_shape is None else [nn.Unflatten(1, self.input_shape)]
        start = 0
        for index, layer in enumerate(self.layers):
            if isinstance(layer, ConvLayer):
                module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, padding=layer.kernel // 2)
                tail: list[nn.Module] = [nn.ReLU(), nn.MaxPool2d(2)]
            else:
                if index and isinstance(self.layers[index - 1], ConvLayer):
                    modules.append(nn.Flatten())
                module = nn.Linear(layer.fan_in, layer.fan_out)
                tail = [nn.ReLU()] if index < len(self.layers) - 1 else []
            w_end = start + layer.fan_out * layer.fan_in
            with torch.no_grad():
                module.weight.copy_(flat[start:w_end].view(layer.weight_shape))
                module.bias.copy_(flat[w_end:w_end + layer.fan_out])
            start = w_end + layer.fan_out
            modules += [module, *tail]
        return nn.Sequential(*modules)

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


def _batched_convolutions(layers, views, inputs: torch.Tensor, input_shape: tuple[int, int, int],
                          n: int) -> torch.Tensor:
    """Run every device's convolution stack; returns per-device flattened features (N, B, C * H * W)."""
    channels, height, width = input_shape
    if inputs.dim() == 2:
        # Shared inputs: the first convolution is one ordinary conv with all devices' filters stacked.
        hidden = inputs.reshape(-1, channels, height, width)
        groups = 1
    else:
        batch = inputs.shape[1]
        hidden = inputs.reshape(n, batch, channels, height, width).transpose(0, 1).reshape(
            batch, n * channels, height, width)
        groups = n
    # Channels-last: oneDNN's grouped convolution is ~2.5x faster on CPU in NHWC than in NCHW (`make bench`).
    hidden = hidden.contiguous(memory_format=torch.channels_last)
    for layer, (weight, bias) in zip(layers, views):
        weight = weight.reshape(n * layer.out_channels, layer.in_channels, layer.kernel, layer.kernel).contiguous(
            memory_format=torch.channels_last)
        hidden = F.conv2d(hidden, weight, bias.reshape(-1), padding=layer.kernel // 2, groups=groups)
        hidden = F.max_pool2d(torch.relu(hidden), 2)
        groups = n
    return hidden.reshape(hidden.shape[0], n, -1).transpose(0, 1)


def build_model(name: str, num_features: int, num_classes: int, hidden: int = 200,
                image_shape: tuple[int, int, int] | None = None) -> BatchedModel:
    """Logistic regression (HyperPrism's MNIST model), a one-hidden-layer MLP, or a small CNN.

    ``cnn`` (for CIFAR-10-shaped input, any (channels, height, width) image):
    conv 5x5 -> 6 channels, conv 5x5 -> 16 channels (each with same padding, ReLU,
    2x2 max-pool), then fully connected 16*(H/4)*(W/4) -> ``hidden`` (ReLU) -> classes.
    The convolutions are the representation part, the fully connected layers
    the decision part (HyperPrism's split).

    ``cnn-small`` (HyperPrism's CNN sized for 802.11a): the same shape with 4 and 8
    channels and 16 hidden units (``hidden`` is not used): on 28x28 MNIST 7,370
    parameters, 29,480 bytes, less than logistic regression's 31,400, so one
    model is 22 datagrams and fits the default 1.5 s round like it (``cnn`` is
    161,582 parameters, 646 KB, which no 802.11a round of 1.5 s carries).

    Any other name is a plugin (``learner.plugins``): a function with this
    signature, less ``name``, returning a ``BatchedModel`` of ``Layer`` / ``ConvLayer``.
    """
    if name == "logreg":
        return BatchedModel(name, (Layer(num_features, num_classes, "decision"),))
    if name == "mlp":
        return BatchedModel(name, (
            Layer(num_features, hidden, "representation"),
            Layer(hidden, num_classes, "decision"),
        ))
    if name in ("cnn", "cnn-small"):
        if image_shape is None or image_shape[0] * image_shape[1] * image_shape[2] != num_features \
                or min(image_shape[1:]) < 4:
            raise ValueError(f"name: {name} needs images of at least 4x4 pixels; the data has {num_features} "
                             f"features and image shape {image_shape}")
        first, second = (6, 16) if name == "cnn" else SMALL_CNN_CHANNELS
        width_fc = hidden if name == "cnn" else SMALL_CNN_HIDDEN
        channels, height, width = image_shape
        flat = second * (height // 4) * (width // 4)
        return BatchedModel(name, (
            ConvLayer(channels, first, 5, "representation"),
            ConvLayer(first, second, 5, "representation"),
            Layer(flat, width_fc, "decision"),
            Layer(width_fc, num_classes, "decision"),
        ), input_shape=image_shape)
    builder = load_plugin("model", name)
    if builder is None:
        raise ValueError(f"name: unknown model {name!r}; allowed: {', '.join(MODELS)}, an nsdml.models entry "
                         f"point or a 'module:function' reference")
    if not callable(builder):
        raise ValueError(f"name: model plugin {name!r} is not callable; it must be a function (num_features, "
                         f"num_classes, hidden, image_shape) -> BatchedModel")
    model = builder(num_features, num_classes, hidden, image_shape)
    if not isinstance(model, BatchedModel):
        raise ValueError(f"name: model plugin {name!r} returned {type(model).__name__}, not a "
                         f"learner.models.BatchedModel (a tuple of Layer / ConvLayer)")
    return model
