"""The parameter-server architecture as algorithms see it: uploads to one server, downloads from it.

A server algorithm (``architecture = "server"``) runs on the access-point
scenario (``network.topology = "access_point"``): every mask it gets is
(N + 1) x (N + 1), node N is the server (the access point), and its exchanges
alternate: an **upload** (every device may send to the server; ``mask[i, N]``
= the server received device i's whole message) then a **download** (the
server sends to every device; ``mask[N, j]`` = device j received it). The
server holds the one global model; a device that missed a download keeps its
own (stale) copy and computes its next gradient there.

The SGD family's server step (dense SGD, eSGD, threshold SGD, DGC)::

    g <- g - (lr / N) * sum_{i : server received i} s_i     (a lost upload contributes nothing)
    x_j <- g if device j received the download, else x_j

with s_i the (sparse) update device i sent. Dividing by N, not by the number
received, keeps the step of each update fixed whatever the network loses
(the sum of what arrived, scaled as the mean of a lossless round).
"""

from __future__ import annotations

import torch

from learner.algorithms.base import FLOAT32_BYTES, Links, Message, dense

SERVER_ARCHITECTURE = "server"


def is_server(algorithm: object) -> bool:
    return getattr(algorithm, "architecture", "decentralized") == SERVER_ARCHITECTURE


def access_point_mask(device_mask: torch.Tensor) -> torch.Tensor:
    """The (N + 1) x (N + 1) server form of an (N, N) device mask, for benches and tests without a network:
    the server (node N) hears device i when anyone heard i, and reaches device j when j heard anyone."""
    devices = device_mask.shape[0]
    full = torch.zeros(devices + 1, devices + 1, dtype=torch.bool)
    full[:devices, devices] = device_mask.any(dim=1)
    full[devices, :devices] = device_mask.any(dim=0)
    return full


def upload(links: Links, devices: int, senders: torch.Tensor | None = None,
           kept: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) bool: which devices' uploads (the exchange's declared message; ``senders``/``kept`` as in
    ``DeclaredLinks.exchange``) the server received."""
    return uploaded(links.exchange(senders=senders, kept=kept), devices)


def uploaded(mask: torch.Tensor, devices: int) -> torch.Tensor:
    """(N,) bool: the devices whose upload the server (node N) received, from the upload exchange's mask."""
    return mask[:devices, devices]


def download(links: Links, devices: int) -> torch.Tensor:
    """(N,) bool: which devices received the server's declared download."""
    return links.exchange()[devices, :devices]


def model_bytes(dim: int) -> int:
    """What the server sends down: the global model, dense float32."""
    return dim * FLOAT32_BYTES


def server_messages(upload_field, dim: int, per_sender: bool = False) -> tuple[Message, Message]:
    """An upload of ``upload_field`` to the server, then the dense global model down to every device."""
    return (Message((upload_field,), to="server", per_sender=per_sender),
            Message((dense("model", dim),), to="devices"))


def sgd_round(x: torch.Tensor, global_model: torch.Tensor, updates: torch.Tensor, links: Links, lr: float,
              kept: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One round of the SGD family through the server (the update in the module docstring).

    ``updates`` (N, d): what each device sends, dense (zeros where not sent); ``kept``: each sender's count of
    sent coordinates, when the upload's sparse size varies per sender.
    Returns (the devices' models, the new global model)."""
    n, dim = x.shape
    received = upload(links, n, kept=kept)
    global_model = global_model - (lr / n) * updates[received].sum(0)
    got = download(links, n)
    return torch.where(got[:, None], global_model, x), global_model
