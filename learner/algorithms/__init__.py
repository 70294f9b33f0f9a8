"""The registry of aggregation algorithms: name -> hyperparameter dataclass."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from learner.algorithms.base import Algorithm, GradFn, Links
from learner.algorithms.adom import ADOM
from learner.algorithms.choco_sgd import ChocoSGD
from learner.algorithms.d2 import D2
from learner.algorithms.defacto import DeFacto
from learner.algorithms.dense_sgd import DenseSGD
from learner.algorithms.detag import DeTAG
from learner.algorithms.dgc import DGC
from learner.algorithms.dpsgd import DPSGD
from learner.algorithms.dsgt import DSGT
from learner.algorithms.esgd import ESGD
from learner.algorithms.hyperprism import HyperPrism, HyperPrismFixed
from learner.algorithms.mudag import Mudag
from learner.algorithms.sgp import SGP
from learner.algorithms.swarmsgd import SwarmSGD
from learner.algorithms.threshold_sgd import ThresholdSGD

REGISTRY: dict[str, type] = {
    "choco_sgd": ChocoSGD,
    "d2": D2,
    "defacto": DeFacto,
    "dense_sgd": DenseSGD,
    "detag": DeTAG,
    "dgc": DGC,
    "dpsgd": DPSGD,
    "dsgt": DSGT,
    "esgd": ESGD,
    "sgp": SGP,
    "threshold_sgd": ThresholdSGD,
    "hyperprism": HyperPrism,  # exponents from per-device hypernetworks
    "hyperprism-fixed": HyperPrismFixed,  # one fixed exponent p
    "swarmsgd": SwarmSGD,
    "mudag": Mudag,
    "adom": ADOM,  # the primal form ADOM+
}


def build_algorithm(name: str, **hyperparameters: Any) -> Algorithm:
    """Instantiate a registered algorithm; unknown names or hyperparameters raise ValueError naming them
    (the field's own name, e.g. ``lr``; the config layer adds ``algorithm.``)."""
    if name not in REGISTRY:
        raise ValueError(f"name: unknown algorithm {name!r}; allowed: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]
    allowed = {f.name for f in fields(cls)} - {"name"}
    for key in hyperparameters:
        if key not in allowed:
            raise ValueError(f"{key}: not a hyperparameter of {name}; allowed: {', '.join(sorted(allowed))}")
    return cls(**hyperparameters)


__all__ = ["REGISTRY", "Algorithm", "GradFn", "Links", "build_algorithm"]
