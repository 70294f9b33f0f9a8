"""What a run writes besides its per-round rows: per-device rows, and the files written when it ends.

- ``device_metrics.csv`` (appended at every evaluation): round, sim_time_s,
  device, local_steps, accuracy, test_loss: each device's own test accuracy
  and loss, and the local steps it has taken.
- ``devices.csv``: per device its samples, classes and final accuracy.
- ``accuracy.png`` and ``devices.png``: the mean with its min-max band, and
  every device's curve with the 10-90 % band; titled with the algorithm, link
  model, devices, density and Dirichlet alpha; accuracy on a fixed 0-1 axis.
- over a placed network (``bridge.LINK_MODELS[name].placed``): ``positions.csv``
  (round, node, role, x_m, y_m: the positions at the start of each round
  while they move, of the first round when they do not) and ``topology.png``
  (positions and each pair's delivery rate over the exchanges the run used,
  read back from ``links.csv`` so a resumed run draws the same picture).

Every file is written from the run's own data only, so it can be drawn again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge import LINK_MODELS, LinkTrace, pair_delivery_rates
from experiments.analysis.plots import plot_accuracy, plot_devices, plot_topology
from learner.devices import Evaluation

CSV_FLOAT_FORMAT = "%.8g"


def device_rows(round_index: int, clock_s: float, local_steps: int | np.ndarray, evaluation: Evaluation | None,
                ledger: list[dict]) -> list[dict]:
    """One row per device of an evaluated round (none when the round was not evaluated): its own accuracy
    and test loss, its local steps so far (the same for every device under synchronous rounds), and its
    ledger so far (radio seconds per state, compute seconds, joules: ``experiments.run.energy``)."""
    if evaluation is None:
        return []
    steps = np.broadcast_to(np.asarray(local_steps), (len(ledger),))
    return [{"round": round_index, "sim_time_s": clock_s, "device": device, "local_steps": steps[device].item(),
             "accuracy": float(accuracy), "test_loss": float(loss), **ledger[device]}
            for device, (accuracy, loss) in enumerate(zip(evaluation.accuracy.tolist(), evaluation.loss.tolist()))]


def run_title(config) -> str:
    """The setting a run's figures belong to, in one line."""
    network = config.network
    where = f"{network.link_model}" + (f" ({config.scenario.topology})" if config.scenario.topology != "adhoc" else "")
    return (f"{config.algorithm.name} over {where}: {config.devices} devices, density {config.scenario.density}, "
            f"alpha {config.data.alpha}, seed {config.seed} ({config.run_id})")


def device_table(shards: list[np.ndarray], labels: np.ndarray, final: Evaluation | None) -> pd.DataFrame:
    return pd.DataFrame({
        "device": range(len(shards)),
        "samples": [len(s) for s in shards],
        "classes": [len(np.unique(labels[s])) for s in shards],
        "final_accuracy": final.accuracy.numpy() if final is not None else np.nan,
        # only in a run with Byzantine devices: which they are (the run's figures leave them out)
        **({"byzantine": (~final.honest).numpy()} if final is not None and final.honest is not None else {}),
    })


def positions_table(trace: LinkTrace, rounds_completed: int, devices: int) -> pd.DataFrame:
    """positions.csv: every node's position at the start of each round while they move, else once."""
    used = trace.positions[:max(rounds_completed, 1)]
    moving = bool((used != used[:1]).any())
    kept = range(len(used)) if moving else range(1)
    nodes = trace.devices
    return pd.DataFrame([{"round": r + 1, "node": node, "role": "device" if node < devices else "access_point",
                          "x_m": float(used[r, node, 0]), "y_m": float(used[r, node, 1])}
                         for r in kept for node in range(nodes)])


def write_end_files(writer, config, shards: list[np.ndarray], labels: np.ndarray, trace: LinkTrace,
                    final: Evaluation | None, metric_rows: list[dict]) -> None:
    """devices.csv, accuracy.png, devices.png, and over a placed network positions.csv and topology.png."""
    run_dir, title = writer.run_dir, run_title(config)
    writer.write_text("devices.csv", device_table(shards, labels, final).to_csv(index=False,
                                                                                float_format=CSV_FLOAT_FORMAT))
    plot_accuracy(pd.DataFrame(metric_rows), run_dir / "accuracy.png", title=title)
    plot_devices(pd.read_csv(run_dir / "device_metrics.csv"), run_dir / "devices.png", title=title)
    if not LINK_MODELS[config.network.link_model].placed:
        return
    positions = positions_table(trace, writer.rounds_completed, config.devices)
    writer.write_text("positions.csv", positions.to_csv(index=False, float_format=CSV_FLOAT_FORMAT))
    used = run_dir / "links.csv"  # absent until a first exchange: an algorithm may never exchange
    links = pd.read_csv(used) if used.is_file() else pd.DataFrame(columns=["round", "exchange"])
    slots = [(int(r) - 1, int(e)) for r, e in zip(links["round"], links["exchange"])]
    plot_topology(positions, pair_delivery_rates(trace, slots), run_dir / "topology.png", title=title)
