"""A finished run is what its files say: every result file, cut, edited, emptied or deleted, makes the next
``nsdml run`` and ``nsdml sweep`` recompute the run (naming the file) and ``nsdml show`` refuse its figures."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main
from experiments.run.integrity import RESULT_FILES, damage, file_entry
from helpers import run_dirs

# Its tests share a costly module fixture (ns-3 traces or a finished run): one pytest-xdist process builds it once.
pytestmark = pytest.mark.xdist_group("test_integrity")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ('name = "intact"\nrounds = 40\ndevices = 5\n[data]\ndataset = "digits"\n'
          '[network]\nlink_model = "synthetic"\n')


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _drop_last_rows(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines[: max(2, len(lines) - 10)])


def _edit_one_value(data: bytes) -> bytes:
    """Change one digit in the last line that has one (a value a reader would report), keeping the length."""
    edited = bytearray(data)
    index = max(i for i, b in enumerate(edited) if chr(b).isdigit())
    edited[index] = ord("7") if edited[index] != ord("7") else ord("3")
    return bytes(edited)


DAMAGE = {"cut to half": _half, "last rows removed": _drop_last_rows, "one value edited": _edit_one_value,
          "emptied": lambda data: b"", "deleted": None}


def _damage(path: Path, form: str) -> None:
    if DAMAGE[form] is None:
        path.unlink()
    else:
        path.write_bytes(DAMAGE[form](path.read_bytes()))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run (results root, cache, config): copied before each test damages it."""
    base = tmp_path_factory.mktemp("finished")
    (base / "run.toml").write_text(CONFIG)
    assert main(["run", str(base / "run.toml"), "--results", str(base / "results"), "--cache", str(base / "cache"),
                 "--quiet"]) == 0
    return base


def _copy(finished: Path, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(finished / "results", tmp_path / "results")
    (run_dir,) = run_dirs(tmp_path / "results")
    return run_dir, finished


FORMS = [(name, form) for name in RESULT_FILES for form in DAMAGE  # staleness.csv: an asynchronous run's, below
         if not (name.endswith(".png") and form in ("last rows removed", "one value edited")) and name != "staleness.csv"]


@pytest.mark.parametrize("name, form", FORMS, ids=[f"{n}-{f}" for n, f in FORMS])
def test_a_damaged_result_file_makes_the_next_run_recompute_it(finished, tmp_path, capsys, name, form):
    run_dir, base = _copy(finished, tmp_path)
    original = {file: (run_dir / file).read_bytes() for file in ("metrics.csv", "links.csv", "devices.csv")}
    _damage(run_dir / name, form)
    assert damage(run_dir, json.loads((run_dir / "run.json").read_text())["files"]) is not None

    assert main(["show", str(run_dir)]) == 1
    out = capsys.readouterr()
    assert f"is damaged: {name}" in out.err and "final (round" not in out.out and "Traceback" not in out.err

    assert main(["run", str(base / "run.toml"), "--results", str(tmp_path / "results"), "--cache",
                 str(base / "cache"), "--quiet"]) == 0
    out = capsys.readouterr()
    assert f"recomputing {run_dir.name}: damaged: {name}" in out.err and "reused" not in out.out
    record = json.loads((run_dir / "run.json").read_text())
    assert record["recomputed_because"].startswith(f"damaged: {name}")
    for file, data in original.items():  # made again, the same bytes (runs are deterministic)
        assert (run_dir / file).read_bytes() == data
    assert main(["run", str(base / "run.toml"), "--results", str(tmp_path / "results"), "--cache",
                 str(base / "cache"), "--quiet"]) == 0
    assert "reused" in capsys.readouterr().out  # intact again


def test_the_manifest_counts_rows_and_names_the_difference(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("round,a\n0,1\n1,2\n2,3\n")
    entry = file_entry(path)
    assert entry["rows"] == 3 and entry["bytes"] == len("round,a\n0,1\n1,2\n2,3\n")
    path.write_text("round,a\n0,1\n")
    assert damage(tmp_path, {"metrics.csv": entry}) == "metrics.csv has 1 rows, run.json records 3"
    path.write_text("round,a\n0,1\n1,2\n2,4\n")
    assert "checksum differs" in damage(tmp_path, {"metrics.csv": entry})
    assert "no checksums" in damage(tmp_path, None)


SWEEP = ('rounds = 40\ndevices = 5\nseed = [0, 1]\n[sweep]\nname = "intact"\ntarget_accuracy = 0.3\n'
         '[data]\ndataset = "digits"\n[network]\nlink_model = "synthetic"\n')


def test_a_sweep_recomputes_a_damaged_run_and_its_table_leaves_it_out_until_then(tmp_path, capsys):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP)
    args = [str(sweep), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"), "--quiet"]
    assert main(["sweep", *args, "--workers", "1"]) == 0
    summary_path = tmp_path / "results" / "sweeps" / "intact" / "summary.csv"
    figures = ["run_id", "status", "max_acc", "final_acc", "conv_rounds", "sim_time_s", "energy_j", "bytes_sent"]
    summary = pd.read_csv(summary_path)[figures]
    run_dir = run_dirs(tmp_path / "results")[0]
    lines = (run_dir / "metrics.csv").read_bytes().splitlines(keepends=True)
    (run_dir / "metrics.csv").write_bytes(b"".join(lines[:-20]))  # 20 rows removed
    capsys.readouterr()

    assert main(["table", *args]) == 0  # the table alone: the damaged run is named and left out
    out = capsys.readouterr()
    assert f"run {run_dir.name} is left out of the table: metrics.csv has 21 rows, run.json records 41" in out.err
    assert "'damaged': 1" in out.out
    table = (tmp_path / "results" / "sweeps" / "intact" / "table.md").read_text()
    assert "| 1 |" in table  # one run in the row, not two

    assert main(["sweep", *args, "--workers", "1"]) == 0
    out = capsys.readouterr()
    assert "recomputed 1 finished run(s): damaged: metrics.csv has 21 rows" in out.out
    assert "'done': 2" in out.out
    pd.testing.assert_frame_equal(pd.read_csv(summary_path)[figures], summary)  # the figures before the damage


@pytest.fixture
def shown(finished, tmp_path):
    run_dir, _ = _copy(finished, tmp_path)
    return run_dir


def _show(run_dir, capsys):
    code = main(["show", str(run_dir)])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out


def test_show_an_intact_run(shown, capsys):
    code, out = _show(shown, capsys)
    assert code == 0 and "final (round 40" in out.out and out.err == ""


@pytest.mark.parametrize("change, expected_code, expected", [
    (lambda d: (d / "run.json").write_text(json.dumps({**json.loads((d / "run.json").read_text()),
                                                        "wall_seconds": "slow"})), 0, "unreadable ('slow')"),
    (lambda d: (d / "run.json").write_text("{not json"), 1, "run.json is damaged"),
    (lambda d: (d / "run.json").write_bytes(b"\xff\xfe\x00garbage"), 1, "run.json is damaged"),
    (lambda d: (d / "run.json").unlink(), 1, "no run.json"),
    (lambda d: (d / "config.toml").write_bytes("# r\u00e9sultat\n".encode("latin-1")), 1, "config.toml"),
    (lambda d: (d / "metrics.csv").write_bytes(b""), 1, "damaged: metrics.csv has 0 rows"),
    (lambda d: (d / "metrics.csv").write_bytes(bytes(range(256)) * 4), 1, "damaged: metrics.csv"),
])
def test_show_on_a_damaged_run_says_what_is_wrong_without_a_traceback(shown, capsys, change, expected_code,
                                                                      expected):
    change(shown)
    code, out = _show(shown, capsys)
    assert code == expected_code and expected in out.out + out.err


def test_show_on_an_unfinished_run_with_odd_metrics(shown, capsys):
    record = json.loads((shown / "run.json").read_text())
    (shown / "run.json").write_text(json.dumps({**record, "status": "running"}))
    (shown / "metrics.csv").write_text("round,accuracy\n0,0.1\n")
    code, out = _show(shown, capsys)
    assert code == 0 and "metrics.csv has no column" in out.err and "mean_accuracy" in out.err
    for text, expected in ((b"", "metrics.csv is empty"), (bytes(range(256)) * 4, "metrics.csv cannot be read"),
                           ((shown / "links.csv").read_bytes()[:50], "metrics.csv has no column")):  # cut mid-line
        (shown / "metrics.csv").write_bytes(text)
        code, out = _show(shown, capsys)
        assert code == 0 and expected in out.err, out.err


def test_show_into_a_pipe_closed_early_ends_quietly(shown):
    with open(shown / "config.toml", "a") as config:  # more than a pipe holds, so the reader leaves mid-write
        config.write("# padding\n" * 30_000)
    done = subprocess.run(f"{sys.executable} -m experiments.cli show {shown} | head -1", shell=True, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith(f"run {shown.name}:") and "Error" not in done.stderr, done.stderr


@pytest.mark.parametrize("text", [b"{not json", b"", b"[1, 2]", b"\xff\xfe"])
def test_a_damaged_run_json_makes_the_next_run_recompute_it(finished, tmp_path, capsys, text):
    run_dir, base = _copy(finished, tmp_path)
    metrics = (run_dir / "metrics.csv").read_bytes()
    (run_dir / "run.json").write_bytes(text)
    assert main(["run", str(base / "run.toml"), "--results", str(tmp_path / "results"), "--cache",
                 str(base / "cache"), "--quiet"]) == 0
    assert f"recomputing {run_dir.name}: run.json is damaged" in capsys.readouterr().err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "done"
    assert (run_dir / "metrics.csv").read_bytes() == metrics
