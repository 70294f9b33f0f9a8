"""`make bench`: every speed figure beside its reference, as a ratio, medians of repetitions.

    python -m experiments.bench [--quick] [--skip-end-to-end]

- learner: one round of local training for N = 50 devices, batched engine vs a
  per-device loop of nn.Modules + SGD optimizers doing the same maths; and the
  batched engine's FLOP/s as a fraction of a large dense matmul's;
- aggregation: one step of every registered algorithm (gradient given) vs a
  plain (N, N) @ (N, d) matrix product of the same shape;
- replay: handing out a cached trace's masks, durations and links.csv rows per round;
- ns-3 worker start-up (import + compile the helper);
- end to end: the HyperPrism base setting (50 devices, 100 rounds) with its wall
  time split into ns-3, training, aggregation, evaluation and I/O.

Everything runs single-threaded, as runs do (see runner.single_threaded).
Results are printed and written to results/bench.csv. ``make bench-ns3``
measures the ns-3 side in depth.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from bridge.synthetic import synthetic_trace
from bridge import link_stats
from experiments.config import parse_config
from experiments.run.machine import matmul_flops_per_s, median_seconds
from experiments.run.runner import run_experiment, single_threaded
from learner.algorithms.registry import SYNCHRONOUS, build_algorithm, names_of_kind
from learner.algorithms.base import FLOAT32_BYTES, payload_bytes
from learner.compress import keep_count
from learner.devices import batch_gradients
from learner.mixing import symmetric_links
from learner.server import access_point_mask, is_server
from learner.models import BatchedModel, ConvLayer, build_model
from ns3_scenarios.scenario import ScenarioConfig

ROOT = Path(__file__).resolve().parents[1]
ROWS: list[dict] = []
FLOOR_BLOCK = 1 << 16  # elements of the block exp's throughput is measured on


def record(group: str, case: str, measured: float, reference: float, unit: str, reference_name: str,
           ratio_name: str) -> None:
    row = {"group": group, "case": case, "measured": measured, "reference": reference, "unit": unit,
           "reference_is": reference_name, "ratio": reference / measured if ratio_name == "speed-up"
           else measured / reference, "ratio_is": ratio_name}
    ROWS.append(row)
    print(f"{group:<12} {case:<38} {measured:>12.4g} {unit:<8} vs {reference_name} {reference:>10.4g}  "
          f"{ratio_name} {row['ratio']:.3g}", flush=True)


def training_flops(model: BatchedModel, batch: int) -> float:
    """Multiply-add FLOPs of one device's training step: per weight and sample 2 for the forward pass, 2 for
    the weight gradient and 2 for the input gradient, which the first layer does not need. A convolution
    weight is used once per output pixel (same padding: the layer's input height x width)."""
    flops, side = 0.0, None
    if model.input_shape is not None:
        side = model.input_shape[1] * model.input_shape[2]
    for index, layer in enumerate(model.layers):
        uses = layer.fan_in * layer.fan_out
        if isinstance(layer, ConvLayer):
            uses *= side
            side //= 4  # 2 x 2 max-pooling
        flops += (4 if index == 0 else 6) * uses
    return flops * batch


LEARNER_MODELS = (("logreg", {}), ("mlp", {"hidden": 200}),
                  ("cnn", {"hidden": 200, "image_shape": (1, 28, 28)}),
                  ("cnn-small", {"image_shape": (1, 28, 28)}))


def bench_learner(devices: int, repeats: int) -> None:
    """Batched engine vs a per-device loop of nn.Modules + SGD (same maths), and both against the matmul peak.

    The loop's own fraction of the peak bounds the batched engine's possible speed-up: peak / loop FLOP/s."""
    peak = matmul_flops_per_s()
    print(f"dense matmul 1024x1024 (one thread): {peak / 1e9:.1f} GFLOP/s")
    generator = torch.Generator().manual_seed(0)
    for name, kwargs in LEARNER_MODELS:
        model = build_model(name, 784, 10, **kwargs)
        params = model.init(devices, 0)
        modules = [model.device_module(row) for row in params]
        optimizers = [torch.optim.SGD(module.parameters(), lr=0.01) for module in modules]
        for batch in (32, 128):
            inputs = torch.rand(devices, batch, 784, generator=generator)
            labels = torch.randint(0, 10, (devices, batch), generator=generator)

            def batched() -> None:
                grad, _ = batch_gradients(model, params, inputs, labels)
                params.add_(grad, alpha=-0.01)

            def loop() -> None:
                for module, optimizer, x, y in zip(modules, optimizers, inputs, labels):
                    optimizer.zero_grad()
                    nn.functional.cross_entropy(module(x), y).backward()
                    optimizer.step()

            fast = median_seconds(batched, repeats)
            slow = median_seconds(loop, max(3, repeats // 3))
            case = f"{name} N={devices} batch={batch}"
            record("learner", case, fast * 1e3, slow * 1e3, "ms/round", "per-device loop", "speed-up")
            flops = devices * training_flops(model, batch)
            record("learner", f"{case} FLOP/s", flops / fast / 1e9, peak / 1e9, "GFLOP/s", "dense matmul", "fraction")
            record("learner", f"{case} loop FLOP/s (ceiling {peak * slow / flops:.2g}x)", flops / slow / 1e9,
                   peak / 1e9, "GFLOP/s", "dense matmul", "fraction")
            if model.input_shape is not None:
                convolutions = convolutions_alone_seconds(model, devices * batch, repeats)
                record("learner", f"{case} vs its convolutions alone (ceiling {slow / convolutions:.2g}x)",
                       fast * 1e3, convolutions * 1e3, "ms/round", "convs, 1 ungrouped", "x floor")


def bench_asynchronous(devices: int, repeats: int, steps: int = 20) -> None:
    """Learner cost per device-step: the asynchronous engine (batched causal levels over a message log with
    10 % stragglers 5x slower and 30 % loss), broadcast (asynchronous D-PSGD) and pairwise (AD-PSGD as
    published: a request to one device and its reply, each lost with 30 %), against the synchronous engine's
    D-PSGD round, logistic regression, batch 128 drawn from each device's shard at every step (a gather, as
    ``Devices`` does under every schedule), medians of ``repeats``. The asynchronous engines compute only the
    stepping devices' gradients in each level, as the runner's ``KeyedGradientOracle`` does."""
    import numpy as np

    from learner.algorithms.dpsgd import DPSGD
    from learner.asynchronous import run_async
    from learner.pairwise import run_pairwise
    from messages.log import MessageLog

    model = build_model("logreg", 784, 10)
    generator = torch.Generator().manual_seed(0)
    shard = 500  # examples per device; every engine draws each step's batch from them, as ``Devices`` does
    examples = torch.rand(devices * shard, 784, generator=generator)
    targets = torch.randint(0, 10, (devices * shard,), generator=generator)

    def batch_of(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The batches of devices ``rows``: 128 examples each from its own shard (a gather, as the runner's)."""
        index = torch.from_numpy(rows)[:, None] * shard + torch.randint(0, shard, (len(rows), 128),
                                                                       generator=generator)
        return examples[index], targets[index]

    def grad_fn(x: torch.Tensor) -> torch.Tensor:
        return batch_gradients(model, x, *batch_of(np.arange(devices)))[0]

    rng = np.random.default_rng(0)
    compute = np.where(np.arange(devices) < devices // 10, 5.0, 1.0) * 0.5
    step_s = np.cumsum(compute[None, :] + rng.uniform(0, 0.005, (steps, devices)), axis=0)
    arrival_s = np.where(rng.random((steps, devices, devices)) < 0.3, np.nan,
                         step_s[:, :, None] + rng.uniform(0.05, 0.4, (steps, devices, devices)))
    log = MessageLog(step_s, arrival_s).within(0.5 * steps)
    device_steps = int((~np.isnan(log.step_end_s)).sum())
    algorithm = build_algorithm("async_dpsgd", lr=0.1)
    x0 = model.init(devices, 0)

    stepping = {"rows": np.arange(devices)}  # as the runner's KeyedGradientOracle: only the stepping devices' rows

    def sparse_grad_fn(x: torch.Tensor) -> torch.Tensor:
        grad, rows = torch.zeros_like(x), stepping["rows"]
        if len(rows):
            grad[rows] = batch_gradients(model, x[rows], *batch_of(rows))[0]
        return grad

    def stepping_in(level) -> None:
        stepping["rows"] = np.flatnonzero(level.step >= 0)

    def asynchronous() -> None:
        run_async(algorithm, x0.clone(), algorithm.init(x0), sparse_grad_fn, log, np.array([0.5 * steps]),
                  before_level=stepping_in)

    mask = torch.rand(devices, devices, generator=generator) < 0.7
    synchronous = DPSGD(lr=0.1)

    def rounds() -> None:
        x = x0.clone()
        for _ in range(steps):
            x, _ = synchronous.step(x, None, grad_fn, FixedLinks(mask))

    partner = (np.arange(devices)[None, :] + rng.integers(1, devices, (steps, devices))) % devices
    request_s = step_s + rng.uniform(0.05, 0.4, (steps, devices))
    request_s[rng.random((steps, devices)) < 0.3] = np.nan
    requests = np.full((steps, devices, devices), np.nan)
    requests[np.arange(steps)[:, None], np.arange(devices)[None, :], partner] = request_s
    answered = request_s < step_s[-1][partner]
    reply_s = np.where(answered & (rng.random((steps, devices)) >= 0.3), request_s + rng.uniform(0.05, 0.4), np.nan)
    pairwise_log = MessageLog(step_s, requests, partner, answered, reply_s).within(0.5 * steps)
    exchanges = build_algorithm("adpsgd", lr=0.1)

    def pairwise() -> None:
        run_pairwise(exchanges, x0.clone(), exchanges.init(x0), sparse_grad_fn, pairwise_log, np.array([0.5 * steps]),
                     before_level=stepping_in)

    async_s = median_seconds(asynchronous, repeats) / device_steps
    pairwise_s = median_seconds(pairwise, repeats) / int((~np.isnan(pairwise_log.step_end_s)).sum())
    sync_s = median_seconds(rounds, repeats) / (steps * devices)
    record("learner", f"async_dpsgd N={devices} logreg per device-step", async_s * 1e3, sync_s * 1e3, "ms",
           "dpsgd rounds", "x slower")
    record("learner", f"adpsgd (pairwise) N={devices} logreg per device-step", pairwise_s * 1e3, sync_s * 1e3, "ms",
           "dpsgd rounds", "x slower")


def convolutions_alone_seconds(model: BatchedModel, images: int, repeats: int) -> float:
    """Forward and backward of the model's convolutions alone, each as ONE ungrouped convolution over all
    ``images`` (every device's batch, one set of filters), channels-last: the same FLOPs as the batched
    engine's grouped ones with none of their overhead, so no engine trains these layers faster on this CPU.
    The per-device loop over this time is a CNN's real ceiling when thin convolutions run far below the
    matmul peak."""
    _, height, width = model.input_shape
    total = 0.0
    for index, layer in enumerate(layer for layer in model.layers if isinstance(layer, ConvLayer)):
        inputs = torch.randn(images, layer.in_channels, height, width).contiguous(
            memory_format=torch.channels_last).requires_grad_(index > 0)  # the first layer needs no input gradient
        weight = torch.randn(layer.weight_shape).contiguous(memory_format=torch.channels_last).requires_grad_()

        def forward_backward() -> None:
            out = nn.functional.conv2d(inputs, weight, padding=layer.kernel // 2)
            out.backward(torch.ones_like(out))

        total += median_seconds(forward_backward, repeats)
        height, width = height // 2, width // 2  # 2 x 2 max-pooling
    return total


class FixedLinks:
    """The same mask for every exchange; a server algorithm gets the access-point form of the device mask."""

    def __init__(self, mask: torch.Tensor, server: bool = False):
        self.mask = access_point_mask(mask) if server else mask

    def exchange(self, senders=None, kept=None) -> torch.Tensor:
        return self.mask


def bench_aggregation(repeats: int) -> None:
    for devices in (50, 100):
        mask = torch.rand(devices, devices, generator=torch.Generator().manual_seed(1)) < 0.5
        for model_name, dim in (("logreg", build_model("logreg", 784, 10).dim),
                                ("mlp", build_model("mlp", 784, 10, hidden=200).dim)):
            x = torch.randn(devices, dim) * 0.01
            grad = torch.randn(devices, dim) * 0.01
            weights = torch.rand(devices, devices)
            reference = median_seconds(lambda: weights.T @ x, repeats)
            for name in names_of_kind(SYNCHRONOUS):
                algorithm = build_algorithm(name)
                model = build_model(model_name, 784, 10)
                try:
                    state = algorithm.init(x, seed=0, model=model)
                    links = FixedLinks(mask, server=is_server(algorithm))
                    step = median_seconds(lambda: algorithm.step(x, state, lambda p: grad, links),
                                          repeats)
                except Exception as error:  # a bench row per algorithm; one that cannot run here is reported
                    print(f"aggregation  {name}: skipped ({type(error).__name__}: {error})")
                    continue
                payloads = payload_bytes(algorithm.messages(dim))
                # The products the update needs at least: one per dense vector sent (DSGT sends two per
                # exchange, DeTAG two in each of R exchanges); a sparse message still needs one.
                products = max(1, round(sum(payloads) / (FLOAT32_BYTES * dim)))
                case = f"{name} N={devices} d={dim}"
                record("aggregation", f"{case} ({len(payloads)} exch.)", step * 1e3, products * reference * 1e3,
                       "ms/step", f"{products} x W.T @ X", "x matmul")
                floor = aggregation_floor(algorithm, x, mask, reference, repeats)
                if floor is not None:
                    record("aggregation", f"{case} vs floor", step * 1e3, floor[1] * 1e3, "ms/step", floor[0],
                           "x floor")


def aggregation_floor(algorithm, x: torch.Tensor, mask: torch.Tensor, product_s: float,
                      repeats: int) -> tuple[str, float] | None:
    """(what, seconds) of the work an algorithm cannot avoid where a matmul is not its measure, else None.

    HyperPrism's receiver variant: one exp per (receiver, weighted sender incl. itself, coordinate), as each
    receiver applies its own exponent to what it heard. Algorithm 1 and Eq. (6): every sender maps its own
    model once, so one ln and one exp per coordinate for the map and again for the inverse map, in float64
    (float32 cannot hold |w|^p), and one float64 product. CHOCO-SGD: writing its (N, N, d) per-link copies once (a clone).
    DGC: one top-k selection per device and a product; eSGD: three (weighted sampling, then the largest
    candidates and the least important selected coordinates of the residual replacement) and a product.
    """
    name, (devices, dim) = algorithm.name, x.shape
    if name.startswith("hyperprism") and algorithm.variant == "receiver":
        heard = int((symmetric_links(mask) | torch.eye(devices, dtype=torch.bool)).sum())  # N * mean K
        # exp's throughput on a cache-sized block, scaled: no gigabyte-sized temporaries in the floor
        exponents = torch.rand(FLOOR_BLOCK) * -5
        out = torch.empty_like(exponents)
        per_block = median_seconds(lambda: torch.exp(exponents, out=out), repeats * 4)
        return f"exp of N*K*d={heard * dim:.3g}", per_block * heard * dim / FLOOR_BLOCK
    if name.startswith("hyperprism"):
        return "2 ln + 2 exp (N,d) + product, f64", float64_map_floor(x, repeats)
    if name == "choco_sgd":
        copies = torch.zeros(devices, devices, dim)
        return "clone (N,N,d)", median_seconds(lambda: copies.clone(), repeats)
    if name in ("dgc", "esgd"):
        k = keep_count(dim, algorithm.keep_ratio)
        top_k = median_seconds(lambda: x.abs().topk(k, dim=1, sorted=False), repeats)
        selections = 3 if name == "esgd" else 1
        return f"{selections} top-k + 1 product", selections * top_k + product_s
    return None


def float64_map_floor(x: torch.Tensor, repeats: int) -> float:
    """Seconds of the work a float64 mirror map and its inverse cannot avoid for every (N, d) coordinate:
    ln and exp twice (measured on a cache-sized block of the model's magnitudes, scaled), and one float64
    (N, N) @ (N, d) product."""
    block = x.reshape(-1)[:FLOOR_BLOCK].double().abs()
    out = torch.empty_like(block)
    log_s = median_seconds(lambda: torch.log(block, out=out), repeats * 4)
    logs = out.mul(3.0)  # p = 3, hyperprism-fixed's default: exp of ordinary (normal) magnitudes
    exp_s = median_seconds(lambda: torch.exp(logs, out=out), repeats * 4)
    maps = 2 * (log_s + exp_s) * x.numel() / block.numel()
    weights, values = torch.rand(x.shape[0], x.shape[0], dtype=torch.float64), x.double()
    return maps + median_seconds(lambda: weights.T @ values, repeats)


def bench_replay(repeats: int) -> None:
    for devices in (50, 100):
        scenario = ScenarioConfig(devices=devices)
        trace = synthetic_trace(scenario, 0, 100, (31400,))

        def replay_round(r: int = 7) -> None:
            links = trace.round_links(r)
            links.exchange(31400)
            _ = links.duration_s
            link_stats(trace, r, links.used)

        per_round = median_seconds(replay_round, repeats * 10)
        record("replay", f"cached trace N={devices}, per round", per_round * 1e3, 1.0, "ms/round",
               "target 1 ms", "x target")


def bench_worker_startup() -> None:
    code = "from ns3_scenarios import ns3_loader; ns3_loader.load()"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)
    startup = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy"], check=True, cwd=ROOT, capture_output=True)
    bare = time.perf_counter() - started
    record("ns-3", "worker start-up (import + compile helper)", startup, bare, "s", "bare python+numpy", "x bare")


def bench_end_to_end(rounds: int, devices: int) -> None:
    """The HyperPrism base setting three times: as a first run (ns-3 simulates the trace unless an earlier
    bench cached it), then over the cached trace evaluating every round, then evaluating every 10th round."""
    base = {"name": "bench", "rounds": rounds, "devices": devices, "data": {"alpha": 0.1, "batch_size": 128},
            "algorithm": {"name": "hyperprism", "lr": 0.01}, "network": {"density": 0.5}}
    for label, eval_every in (("1st run", 1), ("2nd run", 1), ("3rd run", 10)):
        config = parse_config({**base, "eval_every": eval_every})
        with tempfile.TemporaryDirectory() as scratch:
            result = run_experiment(config, Path(scratch) / "results", ROOT / ".cache" / "traces",
                                    log=lambda message: None)
            info = json.loads((result.run_dir / "run.json").read_text())
        split, wall = info["wall_split_s"], info["wall_seconds"]
        trace = "cached trace" if info["trace_reused"] else "ns-3 simulated now"
        case = f"{label}, {trace}, eval_every={eval_every}"
        print(f"end to end: hyperprism, {devices} devices, {rounds} rounds, {case}: wall {wall:.1f} s")
        for phase in ("setup", "links", "training", "aggregation", "evaluation", "io"):
            name = "ns-3 or cache" if phase == "links" else phase
            record("end-to-end", f"{name} ({case})", split.get(phase, 0.0), wall, "s", "run wall", "fraction")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and a short end-to-end run")
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 9
    with single_threaded():
        bench_learner(devices=50, repeats=repeats)
        bench_asynchronous(devices=50, repeats=repeats)
        bench_aggregation(repeats)
        bench_replay(repeats)
        bench_worker_startup()
        if not args.skip_end_to_end:
            bench_end_to_end(rounds=10 if args.quick else 100, devices=50)
    out = ROOT / "results" / "bench.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
