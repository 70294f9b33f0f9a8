"""The bench's arithmetic (no timings are asserted anywhere)."""

import pytest

from experiments import bench
from learner.models import build_model


def test_training_flops_count_forward_weight_and_input_gradients_by_hand():
    logreg = build_model("logreg", 784, 10)
    assert bench.training_flops(logreg, 1) == 4 * 784 * 10  # first layer: no input gradient
    mlp = build_model("mlp", 784, 10, hidden=200)
    assert bench.training_flops(mlp, 32) == 32 * (4 * 784 * 200 + 6 * 200 * 10)
    cnn = build_model("cnn", 784, 10, hidden=200, image_shape=(1, 28, 28))
    per_sample = (4 * 25 * 6 * 28 * 28        # conv 5x5, 1 -> 6 channels, once per output pixel
                  + 6 * 150 * 16 * 14 * 14    # conv 5x5, 6 -> 16 channels after 2x2 pooling
                  + 6 * 784 * 200 + 6 * 200 * 10)
    assert bench.training_flops(cnn, 2) == 2 * per_sample


def test_record_states_speed_ups_as_reference_over_measured_and_the_rest_as_measured_over_reference():
    bench.ROWS.clear()
    bench.record("g", "faster", 2.0, 10.0, "ms", "loop", "speed-up")
    bench.record("g", "slower", 6.0, 2.0, "ms", "matmul", "x matmul")
    assert [row["ratio"] for row in bench.ROWS] == pytest.approx([5.0, 3.0])
    bench.ROWS.clear()


def test_every_registered_algorithm_steps_on_the_benchs_links():
    # The aggregation rows time one step of every algorithm: a server algorithm needs the (N + 1)-node
    # access-point mask (it was skipped with an IndexError on the device mask before).
    import torch

    from learner.algorithms.registry import SYNCHRONOUS, build_algorithm, names_of_kind
    from learner.server import is_server

    model = build_model("logreg", 4, 3)
    x = torch.randn(5, model.dim, generator=torch.Generator().manual_seed(0)) * 0.1
    mask = torch.rand(5, 5, generator=torch.Generator().manual_seed(1)) < 0.5
    for name in names_of_kind(SYNCHRONOUS):
        algorithm = build_algorithm(name)
        links = bench.FixedLinks(mask, server=is_server(algorithm))
        assert links.mask.shape == ((6, 6) if is_server(algorithm) else (5, 5))
        new, _ = algorithm.step(x, algorithm.init(x, seed=0, model=model), lambda p: p * 0.1, links)
        assert new.shape == x.shape and torch.isfinite(new).all(), name
