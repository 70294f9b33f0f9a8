"""AD-PSGD as published: asynchronous decentralized parallel SGD (Lian, Zhang, Zhang & Liu, "Asynchronous
Decentralized Parallel Stochastic Gradient Descent", ICML 2018), over unicast 802.11a.

The paper's worker i, in a loop, with no barrier::

    pick a neighbour j at random
    g <- stochastic gradient at (a read of) x_i
    x_i, x_j <- (x_i + x_j) / 2        (atomic, both sides: W doubly stochastic)
    x_i <- x_i - lr * g                (the read copy's gradient, applied after)

On the message core (``schedule = "async"``, ``peers = "pairwise"``: ``messages.schedules.FreeRunning``,
``learner.pairwise``): device i computes g at its read copy (its model when the step began) and, when the
step ends, sends a request carrying its model y_i, unicast to a neighbour j of the quiet-channel graph drawn
uniformly by (seed, i, step), then applies -lr g. j, when the request arrives, replies with its model y_j
and sets x_j <- (x_j + y_i) / 2; i, when the reply arrives, sets x_i <- x_i + (y_j - y_i) / 2. With nothing
in between this is the paper's x_i = x_j = (y_i + y_j) / 2, then x_i - lr g.

Reconstructions: the atomic average becomes two halves applied where each message arrives, which sum to
zero, so the devices' mean is kept exactly whatever happens meanwhile; no lock: a device keeps computing
while its request is out and may take others' requests meanwhile (so i's half is a correction, not an
assignment). **Loss**: a lost request changes nobody (no reply is sent); a lost reply leaves the exchange
one-sided: the partner moved halfway to the requester, the requester did not (the mean moves by
(y_i - y_j) / 2N). A partner that has taken its last step does not reply. Payload: the dense float32 model,
d x 4 bytes, each way.
"""

from __future__ import annotations

from dataclasses import dataclass

from learner.pairwise import PairwiseExchange


@dataclass(frozen=True)
class ADPSGD(PairwiseExchange):
    lr: float = 0.1
    name: str = "adpsgd"
    local_steps: int = 1  # one gradient step per exchange (the paper's loop)
