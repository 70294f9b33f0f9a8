"""Ctrl-C that is never lost.

Python runs a signal handler between two bytecodes of whatever the main
thread is doing. When that is a weakref callback or a ``__del__``, the
KeyboardInterrupt the handler raises is printed as "Exception ignored" and
dropped, and the command would carry on as if nobody had pressed Ctrl-C;
a library may also turn it into an error of its own (pandas' C parser
raises ParserError). ``watch()`` remembers every Ctrl-C, and ``check()``,
called at safe points (each round of a run, each task of a sweep), raises
it again when it was lost.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

_seen = False  # a Ctrl-C arrived inside the current (or, once it ended, the last) watch
_watching = False


def _handle(signum, frame):
    global _seen
    _seen = True
    raise KeyboardInterrupt


def seen() -> bool:
    """Whether a Ctrl-C arrived inside the current ``watch()``, or the last one after it ended."""
    return _seen


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived inside the current ``watch()``, however it was handled then.
    Outside a watch (a library caller's own loop, a test after an interrupted command) it does nothing."""
    if _watching and _seen:
        raise KeyboardInterrupt


@contextlib.contextmanager
def watch() -> Iterator[None]:
    """Remember Ctrl-C while the block runs. A process that ignores SIGINT (a shell's background job) or has a
    handler of its own keeps it: only Python's default handler is replaced."""
    global _seen, _watching
    installed = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if installed:
        signal.signal(signal.SIGINT, _handle)
    _seen, _watching = False, True
    try:
        yield
        check()  # lost in the block's last stretch, after the last safe point: the block still ends interrupted
    finally:
        _watching = False
        if installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
