"""The one contract every aggregation algorithm implements, synchronous or asynchronous.

An algorithm is a frozen dataclass of hyperparameters (checked in
``__post_init__``) that declares what it sends **once**:

- ``messages(dim) -> tuple[Message, ...]``: one ``Message`` per exchange of a
  round (a synchronous algorithm) or the one message a device sends after each
  of its steps (an asynchronous one). A message is named float32 fields
  (``dense``) or sparse encodings of a vector (``sparse``); its bytes on the air
  and its datagrams are derived from the fields, never written by hand;
- ``init(x, seed=0, model=None) -> state``: the algorithm's extra state for
  parameters x (N, d). An algorithm that draws random numbers keeps its own
  generator, seeded from ``seed``, in the state. ``model`` (a
  ``learner.models.BatchedModel``) is given to algorithms that treat layers
  differently (``model.part_mask``); others ignore it.

A **synchronous** algorithm adds ``step(x, state, grad_fn, links) -> (x_new,
state_new)``: one round. It draws gradients through ``grad_fn(x) -> (N, d)`` and
learns who heard whom only through ``links.exchange()``, called once per
declared message, in order: the links already know the message's size (a
``DeclaredLinks``). A message whose size differs per sender says so
(``per_sender``) and its exchange names who sends (``senders``) or how many
coordinates each sparse sender keeps (``kept``). ``gradients_and_losses``
also gives each device's mini-batch loss.

An **asynchronous** algorithm adds ``local``, ``message`` and ``merge`` and a
``local_steps`` field (``learner.asynchronous``).

Neither kind keeps hidden state on ``self``: everything that carries over lives
in ``state``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch

from learner.compress import encoded_bytes

FLOAT32_BYTES = 4
GradFn = Callable[[torch.Tensor], torch.Tensor]

# Where a message goes: every neighbour (a broadcast), the access point's server (an upload), or every device
# from the server (a download).
DESTINATIONS = ("neighbours", "server", "devices")


@dataclass(frozen=True)
class Field:
    """One named part of a message: ``width`` float32 values, sent dense; or, with ``kept``, ``kept`` of them
    sent sparse (``learner.compress.encoded_bytes``: index and value per coordinate, or a bitmap)."""

    name: str
    width: int
    kept: int | None = None

    def nbytes(self, kept: int | None = None) -> int:
        if self.kept is None:
            return self.width * FLOAT32_BYTES
        return encoded_bytes(self.kept if kept is None else kept, self.width)


def dense(name: str, width: int) -> Field:
    return Field(name, width)


def sparse(name: str, width: int, kept: int) -> Field:
    return Field(name, width, kept)


@dataclass(frozen=True)
class Message:
    """What every sender puts on the air in one exchange. ``per_sender``: the size changes per sender and
    round (senders that skip, or sparse fields whose kept count varies): needs ``network.mode = "online"``;
    ``nbytes`` is then the largest."""

    fields: tuple[Field, ...]
    to: str = "neighbours"
    per_sender: bool = False

    @property
    def nbytes(self) -> int:
        return sum(field.nbytes() for field in self.fields)

    @property
    def width(self) -> int:
        """float32 columns of the message as an asynchronous algorithm's ``message`` returns it."""
        return sum(field.width for field in self.fields)

    def datagrams(self, datagram_bytes: int) -> int:
        return math.ceil(self.nbytes / datagram_bytes)

    def sender_bytes(self, devices: int, senders: torch.Tensor | None = None,
                     kept: torch.Tensor | Sequence[int] | None = None) -> list[int]:
        """Bytes each of ``devices`` senders puts on the air: 0 for a non-sender, the sparse field at its
        sender's ``kept`` count."""
        if kept is None:
            sizes = [self.nbytes] * devices
        else:
            varying = [field for field in self.fields if field.kept is not None]
            if len(varying) != 1:
                raise ValueError(f"kept: a message needs exactly one sparse field to vary, it has {len(varying)}")
            rest = self.nbytes - varying[0].nbytes()
            sizes = [rest + varying[0].nbytes(int(count)) for count in torch.as_tensor(kept).tolist()]
        if senders is not None:
            sizes = [size if send else 0 for size, send in zip(sizes, torch.as_tensor(senders).tolist())]
        return sizes


def payload_bytes(messages: Sequence[Message]) -> tuple[int, ...]:
    """The bytes each declared message puts on the air (one entry per exchange)."""
    return tuple(message.nbytes for message in messages)


def model_message(dim: int) -> tuple[Message]:
    """The dense float32 model, broadcast once a round: D-PSGD and its relatives."""
    return (Message((dense("model", dim),)),)


class Links(Protocol):
    """Who received whom in one round, one declared message at a time: mask[i, j] = j received i's complete
    message (Bool (N, N); (N + 1, N + 1) with the access point's server as node N)."""

    def exchange(self, senders: torch.Tensor | None = None,
                 kept: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor: ...


class DeclaredLinks:
    """The ``Links`` a ``step`` sees: exchange e carries the algorithm's e-th declared message. It turns the
    declaration into the bytes the network layer simulates (``raw.exchange(bytes)``: one int, or one per
    node), so an algorithm never writes a size. ``used``: the exchanges asked for."""

    def __init__(self, raw: Any, messages: Sequence[Message], devices: int,
                 tamper: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        self._raw, self._messages, self._devices, self._tamper = raw, tuple(messages), devices, tamper
        self.used = 0

    def carried(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """What each device's message of this exchange really carried, given what it would send honestly:
        ``values`` itself, unless the run has Byzantine devices (``learner.byzantine``: their rows forged from
        what they received, ``mask``)."""
        return values if self._tamper is None else self._tamper(values, mask)

    def exchange(self, senders: torch.Tensor | None = None,
                 kept: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        if self.used >= len(self._messages):
            raise RuntimeError(f"links.exchange called {self.used + 1} times in one round; the algorithm declares "
                               f"{len(self._messages)} message(s) per round (messages(dim))")
        message = self._messages[self.used]
        sizes = message.sender_bytes(self._devices, senders, kept)
        self.used += 1
        if message.to == "server":
            return self._raw.exchange(sizes + [0])
        if message.to == "devices":
            return self._raw.exchange([0] * self._devices + [message.nbytes])
        return self._raw.exchange(sizes[0] if len(set(sizes)) == 1 else sizes)


def carried(links: Links, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``links.carried(values, mask)`` where the links can say (``DeclaredLinks``); ``values`` otherwise (a test's
    fixed links: every device honest)."""
    tamper = getattr(links, "carried", None)
    return values if tamper is None else tamper(values, mask)


class Algorithm(Protocol):
    name: str

    def messages(self, dim: int) -> tuple[Message, ...]: ...

    def init(self, x: torch.Tensor, seed: int = 0, model: Any = None) -> Any: ...

    def step(self, x: torch.Tensor, state: Any, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, Any]: ...


class StatelessDenseModel:
    """The interface for algorithms that keep no state and send one dense float32 vector a round
    (D-PSGD and its relatives): what they differ in is ``step``."""

    def messages(self, dim: int) -> tuple[Message, ...]:
        return model_message(dim)

    def init(self, x: torch.Tensor, seed: int = 0, model: Any = None) -> None:
        return None


def gradients_and_losses(grad_fn: GradFn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(grad (N, d), per-device mini-batch loss (N,) or None when ``grad_fn`` cannot report losses)."""
    with_loss = getattr(grad_fn, "with_loss", None)
    if with_loss is None:
        return grad_fn(x), None
    return with_loss(x)


def check_range(field: str, value: float, low: float, high: float, *, low_open: bool = True) -> None:
    """Raise ValueError naming ``field`` unless value lies in (low, high] (or [low, high])."""
    below = value <= low if low_open else value < low
    if below or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{field}: {value!r} is outside {bracket}{low}, {high}]")


def check_integer(field: str, value: int, low: int, high: int) -> None:
    """Raise ValueError naming ``field`` unless value is an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field}: {value!r} is not an integer in [{low}, {high}]")


MAX_EXCHANGES_PER_ROUND = 64


def mean_gradient(grad_fn: GradFn, x: torch.Tensor, batches: int) -> torch.Tensor:
    """Mean of ``batches`` stochastic gradients at x: ``batches`` grad_fn calls, each a fresh mini-batch."""
    total = grad_fn(x)
    for _ in range(batches - 1):
        total = total + grad_fn(x)
    return total / batches
