"""The batched engine and D-PSGD against a plain per-device loop of nn.Modules."""

import numpy as np
import pytest
import torch
from torch import nn

from learner.algorithms.base import DeclaredLinks
from learner.algorithms.registry import ALGORITHMS, build_algorithm
from learner.data import Dataset
from learner.devices import Devices, autograd_gradients, batch_gradients, dense_backprop
from learner.models import build_model

N, FEATURES, CLASSES, BATCH = 5, 12, 4, 8


class FixedLinks:
    """Links with a fixed mask for every exchange (unit tests only)."""

    def __init__(self, mask):
        self.mask = mask
        self.payloads = []

    def exchange(self, payload_bytes=None, senders=None, kept=None):
        self.payloads.append(payload_bytes)
        return self.mask


def _module_for(model, flat):
    """An nn.Sequential holding one device's parameters, built layer by layer."""
    layers, start = [], 0
    for index, layer in enumerate(model.layers):
        linear = nn.Linear(layer.fan_in, layer.fan_out)
        w_end = start + layer.fan_in * layer.fan_out
        with torch.no_grad():
            linear.weight.copy_(flat[start:w_end].view(layer.fan_out, layer.fan_in))
            linear.bias.copy_(flat[w_end:w_end + layer.fan_out])
        start = w_end + layer.fan_out
        layers.append(linear)
        if index < len(model.layers) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _flat_grad(module):
    return torch.cat([torch.cat([m.weight.grad.flatten(), m.bias.grad]) for m in module if isinstance(m, nn.Linear)])


@pytest.mark.parametrize("name", ["logreg", "mlp"])
def test_batched_gradients_equal_per_device_modules(name):
    model = build_model(name, FEATURES, CLASSES, hidden=7)
    generator = torch.Generator().manual_seed(0)
    params = torch.randn(N, model.dim, generator=generator)
    inputs = torch.randn(N, BATCH, FEATURES, generator=generator)
    labels = torch.randint(0, CLASSES, (N, BATCH), generator=generator)
    grads, losses = batch_gradients(model, params, inputs, labels)
    for i in range(N):
        module = _module_for(model, params[i])
        loss = nn.functional.cross_entropy(module(inputs[i]), labels[i])
        loss.backward()
        assert torch.allclose(grads[i], _flat_grad(module), atol=1e-6)
        assert torch.isclose(losses[i], loss.detach(), atol=1e-6)


def test_hand_written_backprop_equals_autograd():
    model = build_model("mlp", FEATURES, CLASSES, hidden=9)
    generator = torch.Generator().manual_seed(5)
    params = torch.randn(N, model.dim, generator=generator)
    inputs = torch.randn(N, BATCH, FEATURES, generator=generator)
    labels = torch.randint(0, CLASSES, (N, BATCH), generator=generator)
    by_hand, losses = dense_backprop(model, params, inputs, labels)
    by_autograd, autograd_losses = autograd_gradients(model, params, inputs, labels)
    assert torch.allclose(by_hand, by_autograd, atol=1e-6)
    assert torch.allclose(losses, autograd_losses, atol=1e-6)


def test_shared_inputs_forward_equals_per_device_forward():
    model = build_model("mlp", FEATURES, CLASSES, hidden=9)
    params = torch.randn(N, model.dim, generator=torch.Generator().manual_seed(1))
    inputs = torch.randn(30, FEATURES)
    logits = model.forward(params, inputs)
    for i in range(N):
        assert torch.allclose(logits[i], _module_for(model, params[i])(inputs), atol=1e-5)


def test_dpsgd_step_equals_a_per_device_loop():
    model = build_model("logreg", FEATURES, CLASSES)
    generator = torch.Generator().manual_seed(2)
    params = torch.randn(N, model.dim, generator=generator)
    inputs = torch.randn(N, BATCH, FEATURES, generator=generator)
    labels = torch.randint(0, CLASSES, (N, BATCH), generator=generator)
    mask = torch.rand(N, N, generator=generator) < 0.6
    algorithm = build_algorithm("dpsgd", lr=0.05)
    links = FixedLinks(mask)

    new, _ = algorithm.step(params, algorithm.init(params),
                            lambda x: batch_gradients(model, x, inputs, labels)[0],
                            DeclaredLinks(links, algorithm.messages(model.dim), N))

    # Per device: an optimizer step on its own module, then Metropolis-Hastings
    # averaging with the neighbours it exchanged with both ways.
    two_way = [[bool(mask[i, j] and mask[j, i]) and i != j for j in range(N)] for i in range(N)]
    degree = [sum(row) for row in two_way]
    for j in range(N):
        combined = torch.zeros(model.dim)
        own_weight = 1.0
        for i in range(N):
            if two_way[i][j]:
                w = 1.0 / (1 + max(degree[i], degree[j]))
                combined += w * params[i]
                own_weight -= w
        combined += own_weight * params[j]
        module = _module_for(model, params[j])
        nn.functional.cross_entropy(module(inputs[j]), labels[j]).backward()
        expected = combined - 0.05 * _flat_grad(module)
        assert torch.allclose(new[j], expected, atol=1e-5)
    assert links.payloads == [model.dim * 4]


def test_isolated_device_takes_only_its_local_step():
    model = build_model("logreg", FEATURES, CLASSES)
    params = torch.randn(N, model.dim)
    grad = torch.randn(N, model.dim)
    mask = torch.ones(N, N, dtype=torch.bool)
    mask[3, :] = False  # nobody heard device 3, so it has no two-way link
    new, _ = build_algorithm("dpsgd", lr=0.1).step(params, None, lambda x: grad, FixedLinks(mask))
    assert torch.allclose(new[3], params[3] - 0.1 * grad[3])


def test_devices_sample_only_from_their_own_shard():
    x = np.arange(40, dtype=np.float32).reshape(40, 1).repeat(FEATURES, 1)
    y = np.arange(40) % CLASSES
    data = Dataset(x, y, x[:4], y[:4], CLASSES)
    shards = [np.arange(0, 10), np.arange(10, 15), np.arange(15, 40)]
    devices = Devices(build_model("logreg", FEATURES, CLASSES), data, shards, batch_size=400, seed=0)
    inputs, _ = devices.sample_batch()
    for device, shard in enumerate(shards):
        rows = set(inputs[device, :, 0].long().tolist())
        assert rows <= set(shard.tolist())
        assert len(rows) == len(shard)  # 400 draws cover a shard of <= 25 samples (miss chance ~1e-6)


def test_registry_rejects_unknown_names_and_bad_hyperparameters():
    assert "dpsgd" in ALGORITHMS
    with pytest.raises(ValueError, match="^name: unknown algorithm"):
        build_algorithm("nope")
    with pytest.raises(ValueError, match="^lr:"):
        build_algorithm("dpsgd", lr=-1.0)
    with pytest.raises(ValueError, match="^momentum: not a hyperparameter"):
        build_algorithm("dpsgd", momentum=0.9)


def _cnn_module_for(model, flat):
    """One device's CNN as ordinary nn layers: conv -> ReLU -> max-pool (x2), flatten, linear -> ReLU -> linear."""
    layers, start = [], 0
    for layer in model.layers:
        w_end = start + layer.fan_in * layer.fan_out
        if hasattr(layer, "kernel"):
            module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, padding=layer.kernel // 2)
            tail = [nn.ReLU(), nn.MaxPool2d(2)]
        else:
            module = nn.Linear(layer.fan_in, layer.fan_out)
            tail = [nn.ReLU()]
        with torch.no_grad():
            module.weight.copy_(flat[start:w_end].view(module.weight.shape))
            module.bias.copy_(flat[w_end:w_end + layer.fan_out])
        start = w_end + layer.fan_out
        if isinstance(module, nn.Linear) and not any(isinstance(m, nn.Linear) for m in layers):
            layers.append(nn.Flatten())
        layers += [module, *tail]
    return nn.Sequential(*layers[:-1])  # no ReLU after the last layer


@pytest.mark.parametrize("shape", [(3, 12, 12), (1, 8, 8)])
def test_cnn_batched_gradients_and_shared_forward_equal_per_device_modules(shape):
    features = shape[0] * shape[1] * shape[2]
    model = build_model("cnn", features, CLASSES, hidden=7, image_shape=shape)
    generator = torch.Generator().manual_seed(3)
    params = model.init(N, seed=0) + 0.05 * torch.randn(N, model.dim, generator=generator)
    inputs = torch.rand(N, BATCH, features, generator=generator)
    labels = torch.randint(0, CLASSES, (N, BATCH), generator=generator)
    grads, losses = batch_gradients(model, params, inputs, labels)
    shared = torch.rand(11, features, generator=generator)
    logits = model.forward(params, shared)
    for i in range(N):
        module = _cnn_module_for(model, params[i])
        loss = nn.functional.cross_entropy(module(inputs[i].view(BATCH, *shape)), labels[i])
        loss.backward()
        flat = torch.cat([torch.cat([m.weight.grad.flatten(), m.bias.grad])
                          for m in module if isinstance(m, (nn.Conv2d, nn.Linear))])
        assert torch.allclose(grads[i], flat, atol=1e-5)
        assert torch.isclose(losses[i], loss.detach(), atol=1e-6)
        assert torch.allclose(logits[i], module(shared.view(11, *shape)), atol=1e-5)


@pytest.mark.parametrize("name", ["logreg", "mlp", "cnn"])
def test_device_module_computes_the_batched_forward_of_its_device(name):
    shape = (3, 8, 8)
    model = build_model(name, 3 * 8 * 8, CLASSES, hidden=7, image_shape=shape)
    generator = torch.Generator().manual_seed(4)
    params = model.init(N, seed=0) + 0.05 * torch.randn(N, model.dim, generator=generator)
    inputs = torch.rand(N, BATCH, 3 * 8 * 8, generator=generator)
    logits = model.forward(params, inputs)
    for i in range(N):
        assert torch.allclose(model.device_module(params[i])(inputs[i]), logits[i], atol=1e-5)


def test_cnn_layer_split_convolutions_are_representation():
    model = build_model("cnn", 3 * 32 * 32, 10, hidden=64, image_shape=(3, 32, 32))
    representation = model.part_mask("representation")
    conv_size = (6 * 3 * 25 + 6) + (16 * 6 * 25 + 16)
    assert representation[:conv_size].all() and not representation[conv_size:].any()
    assert model.dim == conv_size + (16 * 8 * 8 * 64 + 64) + (64 * 10 + 10)
    assert torch.equal(model.part_mask("decision"), ~representation)
    with pytest.raises(ValueError, match="^name: cnn needs images"):
        build_model("cnn", 784, 10)


def test_evaluation_in_chunks_equals_one_pass():
    model = build_model("mlp", FEATURES, CLASSES, hidden=5)
    generator = torch.Generator().manual_seed(4)
    x = np.random.default_rng(0).random((50, FEATURES)).astype(np.float32)
    y = np.arange(50) % CLASSES
    devices = Devices(model, Dataset(x, y, x, y, CLASSES), [np.arange(25), np.arange(25, 50)], 4, seed=0)
    params = torch.randn(2, model.dim, generator=generator)
    whole, chunked = devices.evaluate(params, chunk=1000), devices.evaluate(params, chunk=7)
    assert torch.allclose(whole.accuracy, chunked.accuracy) and torch.allclose(whole.loss, chunked.loss, atol=1e-6)
    logits = model.forward(params, torch.from_numpy(x))
    assert torch.allclose(whole.accuracy, (logits.argmax(-1) == torch.from_numpy(y)).float().mean(1))


def test_evaluation_chunk_keeps_the_widest_activation_cache_sized():
    # cnn-small on 28x28 MNIST: the first convolution's 4 channels x 28 x 28 outputs are the widest layer.
    cnn = build_model("cnn-small", 784, 10, image_shape=(1, 28, 28))
    assert cnn.activations_per_input(50) == 50 * 4 * 28 * 28
    assert build_model("mlp", FEATURES, CLASSES, hidden=5).activations_per_input(3) == 3 * 5
    assert build_model("logreg", 784, 10).activations_per_input(50) == 50 * 10
