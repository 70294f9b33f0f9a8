"""The docs site's generated pages: the config reference and a JSON Schema for the TOML, both read from the
config dataclasses themselves (fields, defaults, the trailing comment beside each field, and the rule each
``__post_init__`` checks), so they cannot drift from the code.

``python -m experiments.docs OUT_DIR`` writes OUT_DIR/ for mkdocs: the project's Markdown (README as the home
page, each package's README, the reports), ``config-reference.md`` and ``nsdml-config.schema.json``;
``make docs`` then builds the site with mkdocs-material (the docs extra).
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import re
import shutil
import sys
import textwrap
import tokenize
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from experiments import config as config_module
from experiments.config import ByzantineConfig, DataConfig, ModelConfig, NetworkConfig, RunConfig
from ns3_scenarios.scenario import ScenarioConfig

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("_require", "_check")
# (TOML section, dataclass, fields it leaves to another section); the network section holds the scenario's.
SECTIONS = (("", RunConfig, ("data", "model", "algorithm", "network", "scenario", "byzantine")),
            ("data", DataConfig, ()), ("model", ModelConfig, ()), ("network", NetworkConfig, ()),
            ("network", ScenarioConfig, ("devices",)), ("byzantine", ByzantineConfig, ()))
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
PAGES = (("README.md", "index.md"), ("experiments/README.md", "experiments.md"), ("bridge/README.md", "bridge.md"),
         ("ns3_scenarios/README.md", "ns3_scenarios.md"), ("learner/README.md", "learner.md"),
         ("messages/README.md", "messages.md"), ("tests/README.md", "tests.md"),
         ("experiments/campaigns/README.md", "campaigns.md"))


def field_comments(cls: type) -> dict[str, str]:
    """Field -> the comment written after it in the class body (``alpha: float = 0.1  # Dirichlet ...``)."""
    comments, line_field = {}, {}
    source = textwrap.dedent(inspect.getsource(cls))
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line_field[node.lineno] = node.target.id
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and token.start[0] in line_field:
            comments[line_field[token.start[0]]] = token.string.lstrip("# ").strip()
    return comments


def checked_rules(cls: type) -> dict[str, str]:
    """Field -> the allowed values its ``__post_init__`` states (the message a bad value gets)."""
    module = sys.modules[cls.__module__]
    try:
        body = ast.parse(textwrap.dedent(inspect.getsource(cls.__post_init__)))
    except (OSError, TypeError, AttributeError):
        return {}
    rules = {}
    for call in (n for n in ast.walk(body) if isinstance(n, ast.Call)):
        name = call.func.id if isinstance(call.func, ast.Name) else ""
        if name == "check_name" and call.args and isinstance(call.args[0], ast.Constant):
            rules.setdefault(str(call.args[0].value), config_module.NAME_RULE)
        if name not in CHECKS or len(call.args) < 4 or not isinstance(call.args[1], ast.Constant):
            continue
        field_name = str(call.args[1].value).rsplit(".", 1)[-1]
        try:
            rule = eval(compile(ast.Expression(call.args[3]), "<rule>", "eval"), vars(module))  # noqa: S307
        except Exception:  # a rule that names the instance (self): its source text
            rule = ast.unparse(call.args[3])
        rules.setdefault(field_name, str(rule))
    return rules


def reference_rows() -> list[tuple[str, Any, str, str]]:
    """(dotted field, default, allowed, comment) for every config field but the algorithm's."""
    rows = []
    for section, cls, skip in SECTIONS:
        comments, rules = field_comments(cls), checked_rules(cls)
        for f in fields(cls):
            if f.name in skip or f.default is MISSING:
                continue
            rows.append((f"{section}.{f.name}" if section else f.name, f.default, rules.get(f.name, ""),
                         comments.get(f.name, "")))
    return rows


def config_reference() -> str:
    from experiments.analysis.catalog import describe_algorithms

    lines = ["# Config reference", "",
             "Generated from the config dataclasses by `experiments/docs.py` (`make docs`): each field's default, "
             "the values its check allows, and the comment beside it in the code. Any field may be a list in a "
             "sweep file (the cartesian product; see Sweeps). The JSON Schema of the TOML is "
             "[nsdml-config.schema.json](nsdml-config.schema.json).", ""]
    current = None
    for name, default, rule, comment in reference_rows():
        section = name.split(".")[0] if "." in name else "top level"
        if section != current:
            lines += ["", f"## {'[' + section + ']' if section != 'top level' else 'Top level'}", "",
                      "| field | default | allowed | note |", "|---|---|---|---|"]
            current = section
        cells = [f"`{name}`", f"`{json.dumps(default)}`", rule.replace("|", "\\|"), comment.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## [algorithm]", "", "`algorithm.name` and that algorithm's hyperparameters "
              "(`nsdml algorithms` prints the same):", "", "```", describe_algorithms(), "```", ""]
    return "\n".join(lines)


def _bounds(rule: str) -> dict[str, Any]:
    """JSON Schema bounds and enums from a rule's text: "a number in (0, 1]", "one of a, b"."""
    found = re.search(r"in ([\[(])\s*(-?[\d.e+]+|2\*\*31),\s*(-?[\d.e+]+|2\*\*31)\s*([\])])", rule)
    schema: dict[str, Any] = {}
    if found:
        low, high = (float(eval(v)) for v in found.group(2, 3))  # noqa: S307 (digits and 2**31 only)
        schema["exclusiveMinimum" if found.group(1) == "(" else "minimum"] = low
        schema["exclusiveMaximum" if found.group(4) == ")" else "maximum"] = high
    choice = re.fullmatch(r"one of ([\w.\-, ]+)", rule)
    if choice:
        schema["enum"] = [value.strip() for value in choice.group(1).split(",")]
    return schema


def config_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of run configs and sweep files: every field with its type, default and
    bounds; in a sweep any field may also be a list of such values."""
    from learner.algorithms.registry import ALGORITHMS

    def typed(default: Any, rule: str, comment: str) -> dict[str, Any]:
        if isinstance(default, tuple):  # a list field (network.babblers): an array of integers
            text = "; ".join(part for part in (rule, comment) if part)
            return {"type": "array", "items": {"type": "integer"}, "default": list(default),
                    **({"description": text} if text else {})}
        one = {"type": JSON_TYPES[type(default)], "default": default, **_bounds(rule)}
        if one["type"] == "number":
            one.pop("enum", None)
        text = "; ".join(part for part in (rule, comment) if part)
        return {"anyOf": [one, {"type": "array", "items": one}], **({"description": text} if text else {})}

    sections: dict[str, dict[str, Any]] = {}
    for name, default, rule, comment in reference_rows():
        section, _, key = name.rpartition(".")
        sections.setdefault(section, {})[key] = typed(default, rule, comment)
    top = sections.pop("")
    names = sorted(ALGORITHMS)
    algorithm = {"type": "object", "properties": {"name": {"anyOf": [
        {"type": "string", "description": f"one of {', '.join(names)}, or a plugin module:Class"},
        {"type": "array", "items": {"type": "string"}}]}}, "additionalProperties": True,
        "description": "the algorithm's hyperparameters beside its name (nsdml algorithms lists them)"}
    properties = {**top, **{section: {"type": "object", "properties": values, "additionalProperties": False}
                            for section, values in sections.items()},
                  "algorithm": algorithm,
                  "sweep": {"type": "object", "properties": {
                      "name": {"type": "string"}, "target_accuracy": {"type": "number", "exclusiveMinimum": 0,
                                                                      "maximum": 1},
                      "cases": {"type": "array", "items": {"type": "object"}}}, "additionalProperties": False},
                  "algorithm_overrides": {"type": "object", "additionalProperties": {"type": "object"}}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "nsdml run config or sweep file",
            "type": "object", "properties": properties, "additionalProperties": False}


def write_site_sources(out: Path) -> None:
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for source, target in PAGES:
        if (ROOT / source).is_file():
            (out / target).write_text((ROOT / source).read_text())
    reports = out / "reports"
    reports.mkdir()
    for report in sorted((ROOT / "experiments" / "reports").glob("*.md")):
        (reports / report.name).write_text(report.read_text())
    (out / "config-reference.md").write_text(config_reference())
    (out / "nsdml-config.schema.json").write_text(json.dumps(config_schema(), indent=2) + "\n")


if __name__ == "__main__":
    write_site_sources(Path(sys.argv[1] if len(sys.argv) > 1 else "build/docs"))
