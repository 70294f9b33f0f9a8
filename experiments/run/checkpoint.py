"""Checkpoints: everything a run needs to go on from round r, in one npz file written atomically (no pickle).

``results/<run-id>/checkpoint.npz`` holds the devices' parameters, the
algorithm's state, the mini-batch generator's state, the simulated clock, the
energy meter (batteries included), the metrics rows so far and the byte length
and SHA-256 of each CSV written round by round (``metrics.csv``, ``links.csv``,
``device_metrics.csv``) at round r. An interrupted run
of the same config and code resumes from it: the CSVs are cut back to those
lengths (after checking that their first bytes are the ones recorded) and the
rounds after r are computed again, so the files end byte for byte as an
uninterrupted run's.

The algorithm's state is stored as data, never as objects: tensors and
arrays go into the npz, its shape (tuples, lists, dicts, NamedTuples,
dataclasses, numbers, strings, None) into a JSON description beside them. On
loading, a NamedTuple or dataclass is rebuilt only if its class is one the
algorithm itself uses (found in a freshly initialised state, or defined in the
algorithm's module); anything else makes the checkpoint unusable, and the run
starts again from round 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.run.integrity import APPENDED_FILES

FILE = "checkpoint.npz"
FORMAT = 1
META = "__meta__"


class CheckpointError(ValueError):
    """A state that cannot be stored as data, or a checkpoint that cannot be used."""


@dataclass
class Checkpoint:
    """A run after ``round`` rounds."""

    round: int
    clock_s: float
    exchanges: int
    x: torch.Tensor
    state: Any
    batch_generator: torch.Tensor  # the devices' mini-batch generator state (uint8)
    meter: dict  # EnergyMeter.snapshot()
    metric_rows: list[dict]
    csv: dict  # name -> {"bytes": int, "sha256": str} at this round


def prefix_digest(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        remaining = length
        while remaining:
            chunk = stream.read(min(remaining, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def csv_marks(run_dir: Path) -> dict:
    """Length and SHA-256 of each run CSV as it is now (absent: length 0)."""
    marks = {}
    for name in APPENDED_FILES:
        path = Path(run_dir) / name
        size = path.stat().st_size if path.is_file() else 0
        marks[name] = {"bytes": size, "sha256": prefix_digest(path, size) if size else hashlib.sha256().hexdigest()}
    return marks


def save(run_dir: Path, checkpoint: Checkpoint, identity: dict) -> None:
    """Write ``checkpoint`` atomically (temporary sibling, then rename); ``identity`` (run id, code fingerprint)
    must match when it is loaded."""
    arrays: dict[str, np.ndarray] = {}
    meta = {
        "format": FORMAT, **identity, "round": checkpoint.round, "clock_s": checkpoint.clock_s,
        "exchanges": checkpoint.exchanges, "meter": checkpoint.meter, "metric_rows": checkpoint.metric_rows,
        "csv": checkpoint.csv,
        "x": _encode(checkpoint.x, arrays, "x"),
        "state": _encode(checkpoint.state, arrays, "state"),
        "batch_generator": _encode(checkpoint.batch_generator, arrays, "batch_generator"),
    }
    arrays[META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    run_dir = Path(run_dir)
    handle, temporary = tempfile.mkstemp(prefix=f".{FILE}.", dir=run_dir)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, run_dir / FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load(run_dir: Path, identity: dict, algorithm: Any) -> Checkpoint:
    """The checkpoint in ``run_dir``; CheckpointError says why it cannot be used."""
    path = Path(run_dir) / FILE
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(arrays.pop(META).tobytes().decode())
    except Exception as error:  # any file it cannot read as its arrays (EOFError, TokenError, a bare .npy ...)
        # Not numpy's text: for bytes it cannot parse it advises loading them as a pickle, which nsdml never does.
        raise CheckpointError(f"{FILE} cannot be read as nsdml's arrays ({type(error).__name__})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{FILE} is of another format")
    for key, value in identity.items():
        if meta.get(key) != value:
            raise CheckpointError(f"{FILE} was made by another {key.replace('_', ' ')} ({meta.get(key)})")
    classes = _known_classes(algorithm)
    try:
        return Checkpoint(
            round=int(meta["round"]), clock_s=float(meta["clock_s"]), exchanges=int(meta["exchanges"]),
            x=_decode(meta["x"], arrays, classes), state=_decode(meta["state"], arrays, classes),
            batch_generator=_decode(meta["batch_generator"], arrays, classes), meter=meta["meter"],
            metric_rows=meta["metric_rows"], csv=meta["csv"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{FILE} does not describe this run's state ({type(error).__name__}: {error})") \
            from error


def remove(run_dir: Path) -> None:
    (Path(run_dir) / FILE).unlink(missing_ok=True)


def cut_back(run_dir: Path, marks: dict) -> None:
    """Cut each run CSV back to its recorded length, after checking its first bytes are the recorded ones."""
    for name, mark in marks.items():
        path = Path(run_dir) / name
        size = path.stat().st_size if path.is_file() else 0
        if size < mark["bytes"] or (mark["bytes"] and prefix_digest(path, mark["bytes"]) != mark["sha256"]):
            raise CheckpointError(f"{name} no longer starts with the rows the checkpoint recorded")
        if mark["bytes"] == 0:
            path.unlink(missing_ok=True)
        else:
            os.truncate(path, mark["bytes"])


# ---- the algorithm's state as data -------------------------------------------------------------------

def _encode(value: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    if value is None:
        return {"none": True}
    if isinstance(value, torch.Tensor):
        arrays[path] = value.detach().cpu().numpy()
        return {"tensor": path}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise CheckpointError(f"{path}: an object array cannot be stored as data")
        arrays[path] = value
        return {"array": path}
    if isinstance(value, (bool, int, float, str)):
        return {"value": value, "type": type(value).__name__}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {"namedtuple": type(value).__qualname__,
                "items": [_encode(item, arrays, f"{path}.{name}") for name, item in zip(value._fields, value)]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dataclass": type(value).__qualname__,
                "fields": {f.name: _encode(getattr(value, f.name), arrays, f"{path}.{f.name}")
                           for f in dataclasses.fields(value)}}
    if isinstance(value, (tuple, list)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [_encode(item, arrays, f"{path}[{index}]") for index, item in enumerate(value)]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"dict": {key: _encode(item, arrays, f"{path}.{key}") for key, item in value.items()}}
    raise CheckpointError(f"{path}: a {type(value).__module__}.{type(value).__name__} cannot be stored as data")


def _decode(node: dict, arrays: dict[str, np.ndarray], classes: dict[str, type]) -> Any:
    if "none" in node:
        return None
    if "tensor" in node:
        return torch.from_numpy(np.array(arrays[node["tensor"]]))
    if "array" in node:
        return np.array(arrays[node["array"]])
    if "value" in node:
        kinds = {"bool": bool, "int": int, "float": float, "str": str}
        return kinds[node["type"]](node["value"])
    if "namedtuple" in node:
        return _class(node["namedtuple"], classes)(*[_decode(item, arrays, classes) for item in node["items"]])
    if "dataclass" in node:
        cls = _class(node["dataclass"], classes)
        values = {name: _decode(item, arrays, classes) for name, item in node["fields"].items()}
        instance = object.__new__(cls)
        for name, value in values.items():  # frozen dataclasses too, without running __init__'s side effects
            object.__setattr__(instance, name, value)
        return instance
    if "tuple" in node:
        return tuple(_decode(item, arrays, classes) for item in node["tuple"])
    if "list" in node:
        return [_decode(item, arrays, classes) for item in node["list"]]
    if "dict" in node:
        return {key: _decode(item, arrays, classes) for key, item in node["dict"].items()}
    raise ValueError(f"unknown node {sorted(node)}")


def _class(qualname: str, classes: dict[str, type]) -> type:
    if qualname not in classes:
        raise ValueError(f"{qualname} is not a class of this algorithm's state")
    return classes[qualname]


def _known_classes(algorithm: Any) -> dict[str, type]:
    """The NamedTuple and dataclass types defined in the modules of the algorithm's class and its bases:
    the only classes a checkpoint may rebuild."""
    found: dict[str, type] = {}
    for base in type(algorithm).__mro__:
        module = sys.modules.get(base.__module__)
        if module is None or base.__module__ == "builtins":
            continue
        for candidate in vars(module).values():
            if isinstance(candidate, type) and (dataclasses.is_dataclass(candidate) or
                                                (issubclass(candidate, tuple) and hasattr(candidate, "_fields"))):
                found.setdefault(candidate.__qualname__, candidate)
    return found
