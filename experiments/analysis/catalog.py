"""``nsdml algorithms``: every algorithm with its paper and its hyperparameters, defaults and allowed ranges.

The ranges are read from the algorithm's own validation (the ``check_range`` /
``check_integer`` calls of its ``__post_init__`` and the module functions it
calls), so they have one home: the code that enforces them.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import MISSING, fields

from learner.algorithms.registry import ALGORITHMS, algorithm_class, kind_of
from messages.schedules import SCHEDULES
from learner.plugins import entry_point_names

CHECKS = {"check_range", "check_integer"}


def _calls(function: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(function) if isinstance(node, ast.Call)]


def _name(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else None


def _resolved(node: ast.expr, module) -> str:
    """A bound as the reader wants it: a module constant's value (64, not MAX_EXCHANGES_PER_ROUND), else the
    source text (``self.k_max``: another field)."""
    text = ast.unparse(node)
    value = getattr(module, text, None) if text.isidentifier() else None
    return repr(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else text


def declared_ranges(cls: type) -> dict[str, str]:
    """Field -> allowed range as the validation states it, e.g. {"lr": "(0.0, 100.0]"}."""
    try:
        module = ast.parse(inspect.getsource(inspect.getmodule(cls)))
        source = ast.parse(textwrap.dedent(inspect.getsource(cls.__post_init__)))
    except (OSError, TypeError, AttributeError):
        return {}
    helpers = {node.name: node for node in module.body if isinstance(node, ast.FunctionDef)}
    calls = _calls(source)
    calls += [inner for call in calls if _name(call) in helpers for inner in _calls(helpers[_name(call)])]
    ranges = {}
    for call in calls:
        if _name(call) not in CHECKS or len(call.args) < 4 or not isinstance(call.args[0], ast.Constant):
            continue
        low, high = (_resolved(arg, inspect.getmodule(cls)).replace("self.", "") for arg in call.args[2:4])
        if _name(call) == "check_integer":
            ranges[call.args[0].value] = f"integer in [{low}, {high}]"
            continue
        open_low = not any(k.arg == "low_open" and isinstance(k.value, ast.Constant) and k.value.value is False
                           for k in call.keywords)
        ranges[call.args[0].value] = f"{'(' if open_low else '['}{low}, {high}]"
    return ranges


def paper(cls: type) -> str:
    """The first paragraph of the algorithm module's docstring (its name and paper), as one line."""
    doc = inspect.getmodule(cls).__doc__ or cls.__doc__ or ""
    first = doc.strip().split("\n\n")[0]
    return " ".join(first.split()) if first else "(no docstring)"


def allowed_text(cls: type, field_name: str) -> str | None:
    """What a text hyperparameter allows, as the algorithm's own validation says it (built with a value no
    field allows: the ValueError's 'expected ...' part), or None when it accepts any text."""
    try:
        cls(**{field_name: "\0"})
    except ValueError as error:
        _, _, expected = str(error).partition("expected ")
        return expected or str(error)
    except Exception:  # a plugin may raise anything; it then states nothing we can show
        return None
    return None


def sent_text(cls: type, dim: int = 1000) -> str:
    """What the algorithm's defaults declare it sends (``messages``), at d = ``dim``: each message's fields,
    bytes and destination; a per-sender size needs ``network.mode = "online"``."""
    try:
        messages = cls().messages(dim)
    except Exception:  # a plugin without defaults, or one whose messages raise: the contract check says why
        return "see its docstring"
    per_round = "per round" if kind_of(cls) == "synchronous" else "after each step"
    parts = []
    for message in messages:
        what = " + ".join(f"{field.name} ({field.width}" + (f", {field.kept} kept" if field.kept is not None else "")
                          + ")" for field in message.fields)
        size = f"up to {message.nbytes:,} B" if message.per_sender else f"{message.nbytes:,} B"
        parts.append(f"{what}, {size} to {message.to}" + (" (needs network.mode = \"online\")"
                                                          if message.per_sender else ""))
    return f"at d = {dim:,}, {per_round}: " + "; ".join(parts)


def describe_algorithms() -> str:
    names = sorted(ALGORITHMS) + entry_point_names("algorithm")
    blocks = []
    for name in names:
        cls = algorithm_class(name)
        ranges = declared_ranges(cls)
        lines = [f"{name}: {paper(cls)}", f"    kind: {kind_of(cls)} (schedules: "
                 f"{', '.join(label for label, schedule in SCHEDULES.items() if schedule.algorithm_kind == kind_of(cls))})"]
        for f in fields(cls):
            if f.name == "name":
                continue
            default = f.default if f.default is not MISSING else "(required)"
            allowed = ranges.get(f.name) or ("true or false" if isinstance(default, bool) else
                                             allowed_text(cls, f.name) if isinstance(default, str) else None)
            allowed = allowed or f"see the docstring of {cls.__module__}.{cls.__qualname__}"
            lines.append(f"    {f.name} = {default!r:<8} {allowed}")
        lines.append(f"    sends: {sent_text(cls)}")
        if getattr(cls, "architecture", "") == "server":
            lines.append("    (runs through a server: network.topology = \"access_point\")")
        blocks.append("\n".join(lines))
    footer = ("Your own: algorithm.name = \"package.module:Class\" or an nsdml.algorithms entry point "
              "(learner/README.md, \"Bring your own\").")
    return "\n\n".join(blocks) + "\n\n" + footer
