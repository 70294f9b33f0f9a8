"""The algorithm contract, enforced where the runner calls an algorithm (a plugin or one of nsdml's own), for
both kinds (``learner/algorithms/registry.py``).

Every call is guarded: whatever it raises, or a result the contract does not
allow, becomes one ``PluginFailure`` whose message names the algorithm, the
method and what the contract expects (``learner/README.md``, "The algorithm
contract"). The CLI prints that one line (the traceback only with
``--debug``) and marks the run ``failed``. ``messages`` is checked when the
config is read, so a bad declaration exits 2 before anything runs.

Contract of a result:

- ``messages(d)``: a non-empty tuple (or list) of ``learner.algorithms.base.Message``,
  at most ``MAX_EXCHANGES_PER_ROUND`` (exactly one for an asynchronous
  algorithm), each with at least one field of positive integer width;
- ``step(x, state, grad_fn, links)``: a pair ``(x_new, state_new)`` whose
  ``x_new`` is a torch tensor of x's shape (N, d) and dtype; ``links.exchange``
  called at most once per declared message, in order. An algorithm that never
  exchanges is allowed (a local-training baseline); the runner warns when a
  decentralized one made no exchange in a whole run;
- ``local(x, state, grad_fn, active)``: ``(x_new, state)``, x_new as for ``step``;
- ``message(x, state)``: a tensor (N, m) of x's dtype, m the declared message's
  width (its fields' float32 widths, the model first);
- ``merge(x, state, inbox, active)``: ``(x_new, state, used)``, x_new as for
  ``step``, ``used`` a bool tensor of the inbox's shape (R, N) that uses only
  messages present in the inbox.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from learner.algorithms.base import MAX_EXCHANGES_PER_ROUND, Message
from learner.algorithms.registry import is_asynchronous

CONTRACT = "learner/README.md, \"The algorithm contract\""


class PluginFailure(RuntimeError):
    """A call into an algorithm raised, or returned what the contract does not allow."""


def _call(name: str, method: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (KeyboardInterrupt, MemoryError, PluginFailure):  # Ctrl-C and memory are the run's, not the plugin's
        raise
    except BaseException as error:  # SystemExit too: a plugin must not end nsdml's process
        what = f"exit({error.code!r})" if isinstance(error, SystemExit) else f"{type(error).__name__}: {error}"
        raise PluginFailure(f"algorithm {name}: {method} raised {what}") from error


def checked_messages(name: str, algorithm: Any, dim: int) -> tuple[Message, ...]:
    """``algorithm.messages(dim)``, checked; PluginFailure names what is wrong."""
    messages = _call(name, "messages", algorithm.messages, dim)
    asynchronous = is_asynchronous(algorithm)
    most = 1 if asynchronous else MAX_EXCHANGES_PER_ROUND
    wanted = (f"the contract wants a non-empty tuple of at most {most} learner.algorithms.base.Message "
              f"({'the one message a device sends after each step' if asynchronous else 'one per exchange'}), "
              f"each with fields of positive integer width")
    if not isinstance(messages, (tuple, list)) or not messages or len(messages) > most:
        raise PluginFailure(f"algorithm {name}: messages({dim}) returned {_shown(messages)}; {wanted}")
    for message in messages:
        good = isinstance(message, Message) and message.fields and all(
            isinstance(field.width, int) and not isinstance(field.width, bool) and field.width > 0
            and (field.kept is None or (isinstance(field.kept, int) and 0 <= field.kept <= field.width))
            for field in message.fields) and message.to in ("neighbours", "server", "devices")
        if not good:
            raise PluginFailure(f"algorithm {name}: messages({dim}) returned {_shown(messages)} "
                                f"(entry {_shown(message)}); {wanted}")
    return tuple(messages)


def checked_init(name: str, algorithm: Any, x: torch.Tensor, **kwargs: Any) -> Any:
    return _call(name, "init", algorithm.init, x, **kwargs)


def checked_step(name: str, algorithm: Any, x: torch.Tensor, state: Any, grad_fn: Any,
                 links: Any) -> tuple[torch.Tensor, Any]:
    """One ``step``, its result checked against x's shape and dtype."""
    result = _call(name, "step", algorithm.step, x, state, grad_fn, links)
    wanted = f"the contract wants (x_new, state) with x_new a torch.Tensor of shape {tuple(x.shape)} and {x.dtype}"
    if not isinstance(result, tuple) or len(result) != 2:
        raise PluginFailure(f"algorithm {name}: step returned {_described(result)}; {wanted}")
    _checked_x(name, "step", result[0], x, wanted)
    return result


def _checked_x(name: str, method: str, x_new: Any, x: torch.Tensor, wanted: str) -> None:
    if not isinstance(x_new, torch.Tensor):
        raise PluginFailure(f"algorithm {name}: {method} returned x_new as {_described(x_new)}; {wanted}")
    if tuple(x_new.shape) != tuple(x.shape) or x_new.dtype != x.dtype:
        raise PluginFailure(f"algorithm {name}: {method} returned x_new of shape {tuple(x_new.shape)} and "
                            f"{x_new.dtype}; {wanted}")


class CheckedAsync:
    """An asynchronous algorithm whose ``local``, ``message`` and ``merge`` are guarded (what the engine,
    ``learner.asynchronous.run_async``, calls); everything else is the algorithm's own."""

    def __init__(self, name: str, algorithm: Any, width: int):
        self._name, self._algorithm, self._width = name, algorithm, width

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._algorithm, attribute)

    def local(self, x: torch.Tensor, state: Any, grad_fn: Any, active: torch.Tensor) -> tuple[torch.Tensor, Any]:
        result = _call(self._name, "local", self._algorithm.local, x, state, grad_fn, active)
        wanted = f"the contract wants (x_new, state) with x_new a torch.Tensor of shape {tuple(x.shape)} and {x.dtype}"
        if not isinstance(result, tuple) or len(result) != 2:
            raise PluginFailure(f"algorithm {self._name}: local returned {_described(result)}; {wanted}")
        _checked_x(self._name, "local", result[0], x, wanted)
        return result

    def message(self, x: torch.Tensor, state: Any) -> torch.Tensor:
        result = _call(self._name, "message", self._algorithm.message, x, state)
        shape = (x.shape[0], self._width)
        if not isinstance(result, torch.Tensor) or tuple(result.shape) != shape or result.dtype != x.dtype:
            raise PluginFailure(f"algorithm {self._name}: message returned {_described(result)}; the contract "
                                f"wants a torch.Tensor of shape {shape} (the declared message's width) and {x.dtype}")
        return result

    def merge(self, x: torch.Tensor, state: Any, inbox: Any, active: torch.Tensor) -> tuple[torch.Tensor, Any, Any]:
        result = _call(self._name, "merge", self._algorithm.merge, x, state, inbox, active)
        shape = tuple(inbox.present.shape)
        wanted = (f"the contract wants (x_new, state, used) with x_new a torch.Tensor of shape {tuple(x.shape)} and "
                  f"{x.dtype}, used a bool tensor of shape {shape} marking only received messages")
        if not isinstance(result, tuple) or len(result) != 3:
            raise PluginFailure(f"algorithm {self._name}: merge returned {_described(result)}; {wanted}")
        _checked_x(self._name, "merge", result[0], x, wanted)
        used = result[2]
        if not isinstance(used, torch.Tensor) or used.dtype != torch.bool or tuple(used.shape) != shape:
            raise PluginFailure(f"algorithm {self._name}: merge returned used as {_described(used)}; {wanted}")
        if (used & ~inbox.present).any():
            raise PluginFailure(f"algorithm {self._name}: merge marked a message used that is not in the inbox; "
                                f"{wanted}")
        return result


def _described(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a bare tensor of shape {tuple(value.shape)}"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {type(value).__module__}.{type(value).__name__} of shape {tuple(shape)}"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return f"a {type(value).__name__}"


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
