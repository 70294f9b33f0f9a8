"""AD-PSGD over broadcast: the paper's loop read for a broadcast channel (``adpsgd_broadcast``); the published
pairwise form is ``adpsgd`` (Lian, Zhang, Zhang & Liu, ICML 2018).

The paper's worker i, in a loop, with no barrier::

    pick a neighbour j at random
    g <- stochastic gradient at (a read of) x_i
    x_i, x_j <- (x_i + x_j) / 2        (atomic, both sides)
    x_i <- x_i - lr * g

Reconstructed for broadcast 802.11a (``schedule = "async"``, ``learner.asynchronous``): after its local step a
device broadcasts its model, then averages with **one** model it received since its last merge, drawn
uniformly among them (``average_with_one``): x_j <- (x_j + x_i) / 2. The paper's atomic two-sided averaging
needs a locked two-way exchange that a lossy broadcast channel does not give; here each side averages when it
picks the other's message, with the model as it was when sent (stale by the airtime and the receiver's wait).
The gradient is taken at the device's own current model and applied before the averaging (the paper applies
the gradient of the read copy after it); a device that received nothing keeps its model. Payload: the dense
float32 model, d x 4 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from learner.asynchronous import PairwiseAveraging


@dataclass(frozen=True)
class ADPSGDBroadcast(PairwiseAveraging):
    lr: float = 0.1
    name: str = "adpsgd_broadcast"
    local_steps: int = 1  # one gradient step between sends (the paper's loop)
