"""SwarmSGD read for broadcast (``swarm_sgd_broadcast``); the published pairwise form is ``swarm_sgd``
(Nadiradze, Sabour, Davies, Li & Alistarh, "Asynchronous Decentralized SGD with Quantized and Local Updates",
NeurIPS 2021).

The paper: an interaction picks a random edge {i, j} of the graph; both nodes run their local SGD steps
(H in expectation) on their own models and then average, x_i, x_j <- (x_i + x_j) / 2; nodes never wait for
the others.

Reconstructed for broadcast 802.11a (``schedule = "async"``, ``learner.asynchronous``): every device loops
on its own clock, H local steps (exactly H; the paper draws a random number with mean H), broadcast, then
averages with one model it received since its last merge, drawn uniformly among them (``average_with_one``):
one-sided, as the two-sided atomic average needs a locked two-way exchange a lossy broadcast does not give.
No quantization. The round-based form that the HyperPrism comparison ran stays registered as ``swarmsgd``
(synchronous rounds, a random matching of the two-way links). Payload: the dense float32 model, d x 4 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from learner.asynchronous import PairwiseAveraging


@dataclass(frozen=True)
class SwarmSGDBroadcast(PairwiseAveraging):
    lr: float = 0.1
    local_steps: int = 2  # H
    name: str = "swarm_sgd_broadcast"
