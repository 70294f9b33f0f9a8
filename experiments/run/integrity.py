"""A finished run is what its files say: the manifest ``run.json`` keeps of them, and the check against it.

When a run finishes, ``run.json`` (written last, atomically) records for each
result file its size, its SHA-256 and, for a CSV, its number of data rows.
A finished run counts only while every file still matches: a file cut short,
edited, emptied or deleted makes the run damaged, and the next ``nsdml run``
or ``nsdml sweep`` recomputes it (``recomputed_because`` names the file);
``nsdml show`` and sweep summaries refuse to report its numbers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

APPENDED_FILES = ("metrics.csv", "links.csv", "device_metrics.csv")  # written round by round
PLACED_FILES = ("positions.csv", "topology.png")  # only over a placed network (bridge.LINK_MODELS[name].placed)
RESULT_FILES = ("config.toml", *APPENDED_FILES, "devices.csv", "staleness.csv", "accuracy.png", "devices.png",
                *PLACED_FILES)  # staleness.csv: asynchronous runs only
CSV_FILES = tuple(name for name in RESULT_FILES if name.endswith(".csv"))
CHUNK_BYTES = 1 << 20


def file_entry(path: Path) -> dict:
    """Size, SHA-256 and (for a CSV) data rows of one file."""
    digest, size, newlines = hashlib.sha256(), 0, 0
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
    entry = {"bytes": size, "sha256": digest.hexdigest()}
    if path.name in CSV_FILES:
        entry["rows"] = max(newlines - 1, 0)  # the header is not a row
    return entry


def manifest(run_dir: Path) -> dict[str, dict]:
    """The entry of every result file present in ``run_dir``."""
    return {name: file_entry(Path(run_dir) / name) for name in RESULT_FILES if (Path(run_dir) / name).is_file()}


def damage(run_dir: Path, recorded: object) -> str | None:
    """Why the files of a finished run do not match the manifest ``recorded`` in its run.json (None: intact)."""
    if not isinstance(recorded, dict) or not recorded:
        return "run.json records no checksums of its files (made before they were kept)"
    for name, expected in sorted(recorded.items(), key=lambda item: RESULT_FILES.index(item[0])
                                 if item[0] in RESULT_FILES else len(RESULT_FILES)):
        if name not in RESULT_FILES or not isinstance(expected, dict):
            return f"run.json's file record {name!r} is not one nsdml writes"
        path = Path(run_dir) / name
        if not path.is_file():
            return f"{name} is missing"
        try:
            found = file_entry(path)
        except OSError as error:
            return f"{name} cannot be read ({error.strerror or error})"
        if "rows" in expected and found.get("rows") != expected["rows"]:
            return f"{name} has {found['rows']} rows, run.json records {expected['rows']}"
        if found["bytes"] != expected.get("bytes"):
            return f"{name} has {found['bytes']} bytes, run.json records {expected.get('bytes')}"
        if found["sha256"] != expected.get("sha256"):
            return f"{name} was changed after the run finished (its checksum differs from run.json's)"
    return None
