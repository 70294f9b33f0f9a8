"""Bring your own algorithm, model or dataset without editing nsdml.

A config names a plugin in one of two ways:

- ``"package.module:attr"``: an importable object, the convention of uvicorn
  and of entry points (the current directory is importable, as with uvicorn);
- a plain name registered by an installed package under the entry-point group
  ``nsdml.algorithms``, ``nsdml.models`` or ``nsdml.datasets``, e.g. in its
  ``pyproject.toml``::

      [project.entry-points."nsdml.algorithms"]
      my_gossip = "my_package.gossip:MyGossip"

What each kind must provide is checked when the plugin is loaded, and a
plugin that does not satisfy it is a ``ValueError`` naming what is missing
(the config layer turns it into exit code 2). ``learner/README.md`` has a
complete example.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import sys
from typing import Any

GROUPS = {"algorithm": "nsdml.algorithms", "model": "nsdml.models", "dataset": "nsdml.datasets"}


def is_reference(name: str) -> bool:
    """``module:attr`` rather than a registered name."""
    return ":" in name


def entry_point_names(kind: str) -> list[str]:
    return sorted(ep.name for ep in importlib.metadata.entry_points(group=GROUPS[kind]))


def load_plugin(kind: str, name: str) -> Any | None:
    """The object a ``module:attr`` reference or an entry point names; None when ``name`` is neither.

    Raises ValueError (naming ``name``, the field's own name) when the reference cannot be imported."""
    if is_reference(name):
        module_name, _, attr = name.partition(":")
        if not module_name or not attr:
            raise ValueError(f"name: {name!r} is not a 'module:attr' reference")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except (Exception, SystemExit) as error:  # the user's module may raise anything while importing, or exit
            what = f"exit({error.code!r})" if isinstance(error, SystemExit) else f"{type(error).__name__}: {error}"
            raise ValueError(f"name: cannot import module {module_name!r} for {kind} {name!r}: {what}") from error
        try:
            return _walk(module, attr)
        except AttributeError as error:
            raise ValueError(f"name: module {module_name!r} has no attribute {attr!r}") from error
    for entry_point in importlib.metadata.entry_points(group=GROUPS[kind], name=name):
        try:
            return entry_point.load()
        except (Exception, SystemExit) as error:
            raise ValueError(f"name: the entry point {name!r} in group {GROUPS[kind]} ({entry_point.value}) "
                             f"cannot be loaded: {type(error).__name__}: {error}") from error
    return None


def _walk(module: Any, attr: str) -> Any:
    value = module
    for part in attr.split("."):
        value = getattr(value, part)
    return value


def source_file(obj: Any) -> str | None:
    """The file that defines a plugin (it joins the run's code fingerprint)."""
    try:
        return inspect.getsourcefile(obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj))
    except TypeError:
        return None
