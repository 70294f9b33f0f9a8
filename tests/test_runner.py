"""The round loop: a run whose parameters stop being finite is reported as diverged at that round."""

import json
from dataclasses import dataclass

import pandas as pd
import torch

from experiments.config import parse_config
from experiments.runner import run_experiment
from learner.algorithms import REGISTRY


@dataclass(frozen=True)
class BlowsUp:
    """Plain gradient steps that multiply the parameters by 1e30 each round: inf from round 2 on."""

    lr: float = 0.1
    name: str = "blows-up"

    def exchange_payloads(self, dim):
        return (dim * 4,)

    def init(self, x, seed=0, model=None):
        return None

    def step(self, x, state, grad_fn, links):
        links.exchange(x.shape[1] * 4)
        return (x - self.lr * grad_fn(x)) * 1e30, None


def test_a_diverging_run_is_recorded_as_diverged_at_its_round(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "blows-up", BlowsUp)
    config = parse_config({"name": "boom", "rounds": 6, "devices": 4, "data": {"dataset": "digits"},
                           "algorithm": {"name": "blows-up"}, "network": {"link_model": "synthetic"}})
    result = run_experiment(config, tmp_path / "results", tmp_path / "cache", log=lambda message: None)
    assert result.status == "diverged"
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["status"] == "diverged" and run["rounds_completed"] == 1
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    assert metrics["round"].tolist() == [0, 1]
    assert torch.isfinite(torch.tensor(metrics["mean_accuracy"].to_numpy())).all()
