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
from learner.models import BatchedModel


@dataclass(frozen=True)
class Evaluation:
    accuracy: torch.Tensor  # (N,) test accuracy of each device's model
    loss: torch.Tensor  # (N,) test cross-entropy of each device's model
    consensus_distance: float  # mean_i ||x_i - mean_j x_j||^2


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

    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One mini-batch per device: inputs (N, B, features), labels (N, B)."""
        u = torch.rand(self.num_devices, self.batch_size, generator=self._generator)
        rows = self._shard_starts[:, None] + (u * self._shard_sizes[:, None]).long()
        return self._x[rows], self._y[rows]

    def gradients(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each device's stochastic gradient at its own parameters, and its mini-batch loss."""
        inputs, labels = self.sample_batch()
        return batch_gradients(self.model, params, inputs, labels)

    @torch.no_grad()
    def evaluate(self, params: torch.Tensor, chunk: int = 1000) -> Evaluation:
        """Test accuracy and loss of every device's model, over the test set in chunks (bounded memory)."""
        n, total = params.shape[0], len(self._y_test)
        correct = torch.zeros(n)
        loss_sum = torch.zeros(n, dtype=torch.float64)
        for start in range(0, total, chunk):
            labels = self._y_test[start:start + chunk]
            logits = self.model.forward(params, self._x_test[start:start + chunk])
            t, c = logits.shape[1:]
            losses = F.cross_entropy(logits.reshape(n * t, c), labels.repeat(n), reduction="none").view(n, t)
            correct += (logits.argmax(-1) == labels).float().sum(1)
            loss_sum += losses.double().sum(1)
        return Evaluation(correct / total, (loss_sum / total).float(), consensus_distance(params))


def batch_gradients(
    model: BatchedModel, params: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (N, d) of each device's mean cross-entropy on its batch, and those losses (N,)."""
    with torch.enable_grad():
        leaf = params.detach().requires_grad_(True)
        logits = model.forward(leaf, inputs)
        n, b, c = logits.shape
        losses = F.cross_entropy(logits.reshape(n * b, c), labels.reshape(n * b), reduction="none").view(n, b).mean(1)
        (grad,) = torch.autograd.grad(losses.sum(), leaf)
    return grad, losses.detach()


def consensus_distance(params: torch.Tensor) -> float:
    return float((params - params.mean(0)).pow(2).sum(1).mean())
