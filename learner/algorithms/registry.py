"""The one registry of aggregation algorithms, synchronous and asynchronous: name -> hyperparameter dataclass.

The kind is inferred from the methods (``kind_of``), never registered twice; a plugin (``module:Class`` or an
``nsdml.algorithms`` entry point) of either kind passes the same contract check."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from learner.algorithms.base import Algorithm, GradFn, Links, Message
from learner.server import is_server
from messages.schedules import SCHEDULES
from learner.plugins import entry_point_names, load_plugin
from learner.algorithms.adom import ADOM
from learner.algorithms.adpsgd import ADPSGD
from learner.algorithms.adpsgd_broadcast import ADPSGDBroadcast
from learner.algorithms.bridge import Bridge
from learner.algorithms.clipped_gossip import ClippedGossip
from learner.algorithms.async_dpsgd import AsyncDPSGD
from learner.algorithms.choco_sgd import ChocoSGD
from learner.algorithms.d2 import D2
from learner.algorithms.defacto import DeFacto
from learner.algorithms.dense_sgd import DenseSGD
from learner.algorithms.detag import DeTAG
from learner.algorithms.dgc import DGC
from learner.algorithms.dpsgd import DPSGD
from learner.algorithms.dpsgd_cached import DPSGDCached
from learner.algorithms.dpsgd_one_way import DPSGDOneWay
from learner.algorithms.dsgt import DSGT
from learner.algorithms.esgd import ESGD
from learner.algorithms.fedavg import FedAvg
from learner.algorithms.gossip_learning import GossipLearning
from learner.algorithms.gossip_learning_broadcast import GossipLearningBroadcast
from learner.algorithms.hyperprism import HyperPrism, HyperPrismFixed
from learner.algorithms.krum import Krum
from learner.algorithms.median import CoordinateMedian
from learner.algorithms.mudag import Mudag
from learner.algorithms.sgp import SGP
from learner.algorithms.swarm_sgd import SwarmSGDAsync
from learner.algorithms.swarm_sgd_broadcast import SwarmSGDBroadcast
from learner.algorithms.swarmsgd import SwarmSGD
from learner.algorithms.threshold_sgd import ThresholdSGD
from learner.algorithms.trimmed_mean import TrimmedMean

ALGORITHMS: dict[str, type] = {
    "choco_sgd": ChocoSGD,
    "d2": D2,
    "defacto": DeFacto,
    "dense_sgd": DenseSGD,
    "detag": DeTAG,
    "dgc": DGC,
    "dpsgd": DPSGD,
    "dpsgd_one_way": DPSGDOneWay,  # ablation: D-PSGD mixing the round's one-way heard links
    "dpsgd_cached": DPSGDCached,  # ablation: ... and the newest model ever heard from each sender
    "dsgt": DSGT,
    "esgd": ESGD,
    "fedavg": FedAvg,  # the central reference (server architecture, like dense_sgd, esgd, dgc, threshold_sgd)
    "sgp": SGP,
    "threshold_sgd": ThresholdSGD,
    "hyperprism": HyperPrism,  # exponents from per-device hypernetworks
    "hyperprism-fixed": HyperPrismFixed,  # one fixed exponent p
    "swarmsgd": SwarmSGD,  # the round-based variant HyperPrism compared with; "swarm_sgd" runs asynchronously
    "mudag": Mudag,
    "adom": ADOM,  # the primal form ADOM+
    "adpsgd": ADPSGD,  # as published: pairwise unicast exchanges
    "adpsgd_broadcast": ADPSGDBroadcast,  # its broadcast reading, one-sided
    "async_dpsgd": AsyncDPSGD,
    "gossip_learning": GossipLearning,  # as published: one message to one peer, an update on each receipt
    "gossip_learning_broadcast": GossipLearningBroadcast,  # its broadcast reading
    "swarm_sgd": SwarmSGDAsync,  # as published: random local steps, pairwise unicast exchanges
    "swarm_sgd_broadcast": SwarmSGDBroadcast,  # its broadcast reading, H fixed, one-sided
    # Byzantine-robust aggregation over what each device received (learner/robust.py, learner/byzantine.py)
    "trimmed_mean": TrimmedMean,
    "median": CoordinateMedian,
    "krum": Krum,
    "bridge": Bridge,
    "clipped_gossip": ClippedGossip,
}

SYNCHRONOUS, ASYNCHRONOUS = "synchronous", "asynchronous"
# What each kind must provide beside its hyperparameter fields (an asynchronous one also a local_steps field).
KIND_METHODS = {SYNCHRONOUS: ("messages", "init", "step"),
                ASYNCHRONOUS: ("messages", "init", "local", "message", "merge")}


def kind_of(algorithm: object) -> str:
    """``"asynchronous"`` (local, message, merge on each device's own clock: ``schedule = "async"``) or
    ``"synchronous"`` (a ``step`` per round), inferred from the methods an algorithm (instance or class) has."""
    if all(callable(getattr(algorithm, method, None)) for method in ("local", "message", "merge")):
        return ASYNCHRONOUS
    return SYNCHRONOUS


def is_asynchronous(algorithm: object) -> bool:
    return kind_of(algorithm) == ASYNCHRONOUS


def names_of_kind(kind: str) -> list[str]:
    return sorted(name for name, cls in ALGORITHMS.items() if kind_of(cls) == kind)


def algorithm_rules(algorithm: object, config: Any) -> list[tuple[str, Any, bool, str]]:
    """The config rules an algorithm owns, as (field, value, holds, expected): the schedules of its kind, a
    server algorithm's access point and global rounds, an offline trace only for fixed message sizes."""
    name, network, scenario = config.algorithm.name, config.network, config.scenario
    kind, schedule = kind_of(algorithm), SCHEDULES[network.schedule]
    fitting = " or ".join(f'"{label}"' for label, each in SCHEDULES.items() if each.algorithm_kind == kind)
    server = is_server(algorithm)
    rules = [("network.schedule", network.schedule, schedule.algorithm_kind == kind,
              f"{fitting} for {name}: " + ("it merges on its own clock" if kind == ASYNCHRONOUS else "it steps in rounds")
              + f" (asynchronous algorithms: {', '.join(names_of_kind(ASYNCHRONOUS))})"),
             ("network.schedule", network.schedule, not (server and schedule.message_core),
              f"\"rounds\" for {name}: it runs through a server, whose rounds are global"),
             ("network.topology", scenario.topology, scenario.access_point == server,
              f"\"access_point\" for {name}: it runs through a server" if server else
              f"not \"access_point\" for {name}: a decentralized algorithm has no server (server algorithms: "
              f"{', '.join(label for label, cls in ALGORITHMS.items() if is_server(cls))})"),
             ("network.mode", network.mode,
              network.mode == "online" or not any(message.per_sender for message in config.messages),
              f"\"online\" for {name}: it sends a different payload size per sender and round, which an "
              f"offline trace cannot replay")]
    return rules


def algorithm_class(name: str) -> type:
    """A registered algorithm, an ``nsdml.algorithms`` entry point, or a ``module:Class`` reference.

    A plugin of either kind is checked against the contract (``learner/README.md``); what it lacks is named in
    the ValueError."""
    if name in ALGORITHMS:
        return ALGORITHMS[name]
    cls = load_plugin("algorithm", name)
    if cls is None:
        plugins = entry_point_names("algorithm")
        raise ValueError(f"name: unknown algorithm {name!r}; allowed: {', '.join(sorted(ALGORITHMS))}"
                         + (f", plugins {', '.join(plugins)}" if plugins else "")
                         + ", or a 'module:Class' reference")
    check_algorithm_contract(cls, name)
    return cls


def check_algorithm_contract(cls: Any, name: str) -> None:
    if not isinstance(cls, type):
        raise ValueError(f"name: {name!r} is a {type(cls).__name__}, not a class; an algorithm is a dataclass "
                         f"of hyperparameters with {', '.join(KIND_METHODS[SYNCHRONOUS])} (synchronous) or "
                         f"{', '.join(KIND_METHODS[ASYNCHRONOUS])} (asynchronous)")
    kind = kind_of(cls)
    if kind == SYNCHRONOUS and any(callable(getattr(cls, method, None)) for method in ("local", "message", "merge")):
        half = [method for method in ("local", "message", "merge") if not callable(getattr(cls, method, None))]
        raise ValueError(f"name: {name!r} does not satisfy the asynchronous algorithm contract: missing method(s) "
                         f"{', '.join(half)} (see learner/README.md, \"The algorithm contract\")")
    missing = [method for method in KIND_METHODS[kind] if not callable(getattr(cls, method, None))]
    if missing:
        raise ValueError(f"name: {name!r} does not satisfy the {kind} algorithm contract: missing method(s) "
                         f"{', '.join(missing)} (see learner/README.md, \"The algorithm contract\")")
    if not is_dataclass(cls):
        raise ValueError(f"name: {name!r} does not satisfy the algorithm contract: it must be a (frozen) "
                         f"dataclass whose fields are its hyperparameters")
    if kind == ASYNCHRONOUS and "local_steps" not in {f.name for f in fields(cls)}:
        raise ValueError(f"name: {name!r} does not satisfy the asynchronous algorithm contract: it needs a "
                         f"local_steps field (gradient steps between its sends)")


def build_algorithm(name: str, **hyperparameters: Any) -> Algorithm:
    """Instantiate an algorithm (registered, entry point or ``module:Class``); unknown names or hyperparameters
    raise ValueError naming them (the field's own name, e.g. ``lr``; the config layer adds ``algorithm.``)."""
    cls = algorithm_class(name)
    allowed = {f.name for f in fields(cls)} - {"name"}
    for key in hyperparameters:
        if key not in allowed:
            raise ValueError(f"{key}: not a hyperparameter of {name}; allowed: {', '.join(sorted(allowed))}")
    try:
        return cls(**hyperparameters)
    except ValueError:  # a hyperparameter out of range: the message names it
        raise
    except TypeError as error:  # a plugin field without a default, for instance
        raise ValueError(f"name: {name!r} cannot be built from its defaults and the given hyperparameters: "
                         f"{error}") from error
    except (Exception, SystemExit) as error:  # a plugin's __post_init__ may raise anything, or exit
        what = f"exit({error.code!r})" if isinstance(error, SystemExit) else f"{type(error).__name__}: {error}"
        raise ValueError(f"name: building {name!r} (its __post_init__) raised {what}; the contract wants "
                         f"ValueError naming the hyperparameter for a bad value") from error


__all__ = ["ALGORITHMS", "Algorithm", "GradFn", "Links", "Message", "algorithm_class", "build_algorithm", "kind_of"]
