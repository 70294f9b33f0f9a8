"""The algorithm contract, enforced where the runner calls an algorithm (a plugin or one of nsdml's own).

Every call (``exchange_payloads``, ``init``, ``step``) is guarded: whatever it
raises, or a result the contract does not allow, becomes one ``PluginFailure``
whose message names the algorithm, the method and what the contract expects
(``learner/README.md``, "The algorithm contract"). The CLI prints that one
line (the traceback only with ``--debug``) and marks the run ``failed``.
``exchange_payloads`` is checked when the config is read, so a bad payload
declaration exits 2 before anything runs.

Contract of a result:

- ``exchange_payloads(d)``: a non-empty tuple (or list) of at most
  ``MAX_EXCHANGES_PER_ROUND`` positive integers, the bytes each device sends
  in each exchange of a round;
- ``step(x, state, grad_fn, links)``: a pair ``(x_new, state_new)`` whose
  ``x_new`` is a torch tensor of x's shape (N, d) and dtype; ``links.exchange``
  called at most once per declared exchange, in order. An algorithm that never
  exchanges is allowed (a local-training baseline); the runner warns when a
  decentralized one made no exchange in a whole run.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from learner.algorithms.base import MAX_EXCHANGES_PER_ROUND

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


def checked_payloads(name: str, algorithm: Any, dim: int) -> tuple[int, ...]:
    """``algorithm.exchange_payloads(dim)``, checked; PluginFailure names what is wrong."""
    payloads = _call(name, "exchange_payloads", algorithm.exchange_payloads, dim)
    wanted = (f"the contract wants a non-empty tuple of at most {MAX_EXCHANGES_PER_ROUND} positive integers "
              f"(bytes each device sends per exchange)")
    if not isinstance(payloads, (tuple, list)) or not payloads or len(payloads) > MAX_EXCHANGES_PER_ROUND:
        raise PluginFailure(f"algorithm {name}: exchange_payloads({dim}) returned {_shown(payloads)}; {wanted}")
    for entry in payloads:
        if isinstance(entry, bool) or not isinstance(entry, int) or entry <= 0:
            raise PluginFailure(f"algorithm {name}: exchange_payloads({dim}) returned {_shown(payloads)} "
                                f"(entry {entry!r}); {wanted}")
    return tuple(int(entry) for entry in payloads)


def checked_init(name: str, algorithm: Any, x: torch.Tensor, **kwargs: Any) -> Any:
    return _call(name, "init", algorithm.init, x, **kwargs)


def checked_step(name: str, algorithm: Any, x: torch.Tensor, state: Any, grad_fn: Any,
                 links: Any) -> tuple[torch.Tensor, Any]:
    """One ``step``, its result checked against x's shape and dtype."""
    result = _call(name, "step", algorithm.step, x, state, grad_fn, links)
    wanted = f"the contract wants (x_new, state) with x_new a torch.Tensor of shape {tuple(x.shape)} and {x.dtype}"
    if not isinstance(result, tuple) or len(result) != 2:
        raise PluginFailure(f"algorithm {name}: step returned {_described(result)}; {wanted}")
    x_new = result[0]
    if not isinstance(x_new, torch.Tensor):
        raise PluginFailure(f"algorithm {name}: step returned x_new as {_described(x_new)}; {wanted}")
    if tuple(x_new.shape) != tuple(x.shape) or x_new.dtype != x.dtype:
        raise PluginFailure(f"algorithm {name}: step returned x_new of shape {tuple(x_new.shape)} and "
                            f"{x_new.dtype}; {wanted}")
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
