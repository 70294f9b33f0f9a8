"""All devices of a run: their data shards, one batched model, gradients and evaluation.

This is the only learner code that knows about layers and data; algorithms
see flat (N, d) tensors and a gradient function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from learner.data import Dataset
from learner.models import BatchedModel, Layer


EVAL_ACTIVATION_FLOATS = 8_000_000  # one evaluation chunk's widest activations (32 MB of float32)


@dataclass(frozen=True)
class Evaluation:
    accuracy: torch.Tensor  # (N,) test accuracy of each device's model
    loss: torch.Tensor  # (N,) test cross-entropy of each device's model
    consensus_distance: float  # mean_i ||x_i - mean_j x_j||^2 (over the honest devices when some are Byzantine)
    honest: torch.Tensor | None = None  # (N,) bool where some devices are Byzantine: the run's figures count these

    def counted(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (N,) of the devices a run's figures count: the honest ones (all when none is Byzantine)."""
        return values if self.honest is None else values[self.honest]


class Devices:
    """N devices, each with its own shard, sampling mini-batches with replacement from it."""

    def __init__(self, model: BatchedModel, dataset: Dataset, shards: list[np.ndarray], batch_size: int, seed: int):
        self.model = model
        self.batch_size = batch_size
        self.num_devices = len(shards)
        order = np.concatenate(shards)
        self._x = torch.from_numpy(dataset.x_train[order])
        self._y = torch.from_numpy(dataset.y_train[order])
        sizes = np.array([len(s) for s in shards])
        self._shard_sizes = torch.from_numpy(sizes)
        self._shard_starts = torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)[:-1]]))
        self._x_test = torch.from_numpy(dataset.x_test)
        self._y_test = torch.from_numpy(dataset.y_test)
        self._generator = torch.Generator().manual_seed(seed)
        self._blocks: list[torch.Tensor] = []  # keyed_batch's draws so far, in the generator's order

    @property
    def batch_generator_state(self) -> torch.Tensor:
        """The mini-batch generator's state (a checkpoint stores it; setting it resumes the same batches)."""
        return self._generator.get_state()

    @batch_generator_state.setter
    def batch_generator_state(self, state: torch.Tensor) -> None:
        self._generator.set_state(state)

    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One mini-batch per device: inputs (N, B, features), labels (N, B)."""
        u = torch.rand(self.num_devices, self.batch_size, generator=self._generator)
        rows = self._shard_starts[:, None] + (u * self._shard_sizes[:, None]).long()
        return self._x[rows], self._y[rows]

    def gradients(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each device's stochastic gradient at its own parameters, and its mini-batch loss."""
        inputs, labels = self.sample_batch()
        return batch_gradients(self.model, params, inputs, labels)

    def keyed_batch(self, counts: np.ndarray, devices: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One mini-batch per device keyed by how many gradients it has evaluated before: device j's c-th
        batch is row j of the c-th draw ``sample_batch`` makes, so it is the batch the synchronous schedules
        give device j at its c-th evaluation, whatever the other devices are doing (the asynchronous engine's
        levels, a per-event loop, another link model or timing: common random numbers). Draws are kept from
        the generator's stream as far as the furthest device has got; the generator itself is not reset.
        ``devices``: only these devices' batches (``counts`` then theirs), in that order."""
        devices = np.arange(self.num_devices) if devices is None else np.asarray(devices)
        while len(self._blocks) <= int(np.max(counts, initial=0)):
            self._blocks.append(torch.rand(self.num_devices, self.batch_size, generator=self._generator))
        u = torch.stack([self._blocks[int(c)][int(j)] for j, c in zip(devices, counts)])
        index = torch.from_numpy(devices)
        rows = self._shard_starts[index, None] + (u * self._shard_sizes[index, None]).long()
        return self._x[rows], self._y[rows]

    def keyed_gradients(self, params: torch.Tensor, counts: np.ndarray,
                        devices: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``gradients`` on ``keyed_batch(counts, devices)``; ``params`` holds those devices' rows."""
        inputs, labels = self.keyed_batch(counts, devices)
        return batch_gradients(self.model, params, inputs, labels)

    @torch.no_grad()
    def evaluate(self, params: torch.Tensor, chunk: int | None = None,
                 honest: torch.Tensor | None = None) -> Evaluation:
        """Test accuracy and loss of every device's model, over the test set in chunks: by default as many
        test inputs as keep one layer's activations near ``EVAL_ACTIVATION_FLOATS`` (cache-sized; 1,000
        inputs at once made a 50-device CNN evaluation 3-4x slower, the activations spilling to memory)."""
        n, total = params.shape[0], len(self._y_test)
        chunk = chunk or max(1, min(total, EVAL_ACTIVATION_FLOATS // self.model.activations_per_input(n)))
        correct = torch.zeros(n)
        loss_sum = torch.zeros(n, dtype=torch.float64)
        for start in range(0, total, chunk):
            labels = self._y_test[start:start + chunk]
            logits = self.model.forward(params, self._x_test[start:start + chunk])
            t, c = logits.shape[1:]
            losses = F.cross_entropy(logits.reshape(n * t, c), labels.repeat(n), reduction="none").view(n, t)
            correct += (logits.argmax(-1) == labels).float().sum(1)
            loss_sum += losses.double().sum(1)
        counted = params if honest is None else params[honest]
        return Evaluation(correct / total, (loss_sum / total).float(), consensus_distance(counted), honest)


def batch_gradients(
    model: BatchedModel, params: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (N, d) of each device's mean cross-entropy on its batch, and those losses (N,)."""
    if all(isinstance(layer, Layer) for layer in model.layers):
        return dense_backprop(model, params, inputs, labels)
    return autograd_gradients(model, params, inputs, labels)


def autograd_gradients(
    model: BatchedModel, params: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_gradients`` by autograd, for any model (the CNN's convolutions)."""
    n = params.shape[0]
    with torch.enable_grad():
        # One leaf per layer tensor, not the flat (N, d) row: autograd would otherwise back-propagate
        # every slice into its own zero-filled (N, d) buffer and add them up (most of a round's time).
        leaves = [tensor.detach().requires_grad_(True) for view in model.unflatten(params) for tensor in view]
        logits = model.forward_layers(list(zip(leaves[0::2], leaves[1::2])), inputs)
        b, c = logits.shape[1:]
        losses = F.cross_entropy(logits.reshape(n * b, c), labels.reshape(n * b), reduction="none").view(n, b).mean(1)
        grads = torch.autograd.grad(losses.sum(), leaves)
    return torch.cat([grad.reshape(n, -1) for grad in grads], dim=1), losses.detach()


@torch.no_grad()
def dense_backprop(
    model: BatchedModel, params: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_gradients`` for fully connected models, back-propagated by hand into one (N, d) buffer.

    With a_0 = inputs, a_l = relu(a_{l-1} W_l^T + b_l) and softmax cross-entropy on the last layer:
    g_L = (softmax(z_L) - onehot(y)) / B;  dW_l = g_l^T a_{l-1};  db_l = sum_b g_l;
    g_{l-1} = (g_l W_l) * [a_{l-1} > 0].  Each dW_l is written straight into its slice of the
    result (no per-layer buffers to concatenate; autograd's bookkeeping cost more than the maths).
    """
    views = model.unflatten(params)
    activations = [inputs]
    for index, (weight, bias) in enumerate(views):
        z = torch.baddbmm(bias.unsqueeze(1), activations[-1], weight.transpose(1, 2))
        activations.append(z.clamp_min_(0) if index < len(views) - 1 else z)
    logits = activations.pop()
    n, b, c = logits.shape
    log_probs = torch.log_softmax(logits, dim=-1)
    picked = log_probs.gather(2, labels.unsqueeze(2)).squeeze(2)
    losses = -picked.mean(1)
    upstream = log_probs.exp_()
    upstream.scatter_add_(2, labels.unsqueeze(2), torch.full((n, b, 1), -1.0, dtype=upstream.dtype))
    upstream.div_(b)
    grad = torch.empty_like(params)
    grad_views = model.unflatten(grad)
    for index in range(len(views) - 1, -1, -1):
        weight = views[index][0]
        grad_weight, grad_bias = grad_views[index]
        torch.bmm(upstream.transpose(1, 2), activations[index], out=grad_weight)
        torch.sum(upstream, dim=1, out=grad_bias)
        if index:
            upstream = torch.bmm(upstream, weight).mul_(activations[index] > 0)
    return grad, losses


def consensus_distance(params: torch.Tensor) -> float:
    return float((params - params.mean(0)).pow(2).sum(1).mean())
