"""Gossip learning as published (Ormándi, Hegedűs & Jelasity, "Gossip learning with linear models on fully
distributed data", CCPE 2013; Hegedűs, Danner & Jelasity, "Gossip learning as a decentralized alternative to
federated learning", DAIS 2019; "Decentralized learning works", JPDC 2021), over unicast 802.11a.

Every node keeps a model x with an age a. Every period it sends (x, a) to one peer drawn at random; on
receiving (x_r, a_r) it merges, weighting by age, then updates on its own data::

    x <- (a x + a_r x_r) / (a + a_r);   a <- max(a, a_r)      (equal weights while both ages are 0)
    x <- x - lr * g(x);                 a <- a + 1

On the message core (``schedule = "async"``, ``peers = "one"``: ``messages.schedules.FreeRunning``,
``learner.pairwise.run_push``): a device's loop is its period (``async_period_s``, at least its local
steps' compute), after which its message goes as a unicast (acknowledged, with the MAC's retries) to one
neighbour of the quiet-channel graph drawn uniformly by (seed, device, step); each message that arrives is
merged and followed by ``local_steps`` updates at the moment it arrives. Reconstructions: the update on
receipt takes no simulated time (its compute is charged to the device's energy when it happens); a node
that receives nothing does not learn, as in the paper. The merge and the age are the broadcast reading's
(``gossip_learning_broadcast``), with one message in each inbox. Payload: the dense float32 model and its
age, d x 4 + 4 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from learner.algorithms.gossip_learning_broadcast import GossipLearningBroadcast


@dataclass(frozen=True)
class GossipLearning(GossipLearningBroadcast):
    name: str = "gossip_learning"
    peers: ClassVar[str] = "one"
