"""Hostile inputs a new user met (each a case that crashed, hung or was silently accepted): every one ends in a
clean refusal naming the field (exit 2, no traceback, nothing written) or in a recompute."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from experiments.cli import main
from helpers import run_dirs

SMALL = 'name = "hostile"\nrounds = 3\ndevices = 4\n[data]\ndataset = "digits"\n[network]\nlink_model = "{link}"\n{network}'
ASYNC = '\nschedule = "async"\n[algorithm]\nname = "adpsgd"\n'


def _config(tmp_path, network: str = "", link: str = "ideal", name: str = "run.toml"):
    """A 4-device, 3-round config whose [network] holds ``network`` (and, after it, any further tables)."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SMALL.format(link=link, network=network))
    return path


def _run(path, tmp_path, capsys, *extra):
    code = main(["run", str(path), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"),
                 "--quiet", *extra])
    return code, capsys.readouterr()


def _csv(tmp_path, values, name="steps.csv"):
    path = tmp_path / name
    path.write_text("step_s\n" + "\n".join(str(v) for v in values) + "\n")
    return path


REFUSED = [  # (case, [network] lines, the field the one line must name[, link model])
    ("async with no compute time plans millions of steps", "compute_s_per_step = 0.0" + ASYNC,
     "network.compute_model: under schedule = \"async\""),
    ("async with lognormal sigma 5", 'compute_model = "lognormal"\ncompute_sigma = 5.0' + ASYNC,
     "network.compute_model: under schedule = \"async\""),
    ("async with a compute CSV of 1e-320 s", 'compute_model = "csv"\ncompute_csv = "{tiny}"' + ASYNC,
     "network.compute_model: under schedule = \"async\""),
    ("SwarmSGD drawing 1,000 local steps on average, unthrottled",
     'schedule = "async"\n[algorithm]\nname = "swarm_sgd"\nlocal_steps = 1000\n', "algorithm.local_steps: 1000"),
    ("a compute CSV that is /dev/zero", 'compute_model = "csv"\ncompute_csv = "/dev/zero"',
     "network.compute_csv: '/dev/zero' is not a regular file"),
    ("a compute CSV that is a FIFO", 'compute_model = "csv"\ncompute_csv = "{fifo}"', "is not a regular file"),
    ("a compute CSV of 1e300 s", 'compute_model = "csv"\ncompute_csv = "{huge}"', "network.compute_csv"),
    ("trace_chunk_rounds = 10**400", "trace_chunk_rounds = 1" + "0" * 400, "network.trace_chunk_rounds", "ns3"),
]


@pytest.mark.parametrize("case, network, words, link", [(*case, "ideal")[:4] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])
def test_a_hostile_setting_is_refused_with_one_line_naming_its_field(tmp_path, capsys, case, network, words, link):
    fifo = tmp_path / "steps.fifo"
    os.mkfifo(fifo)  # opened for reading it would block forever
    network = network.format(tiny=_csv(tmp_path, [1e-320] * 4, "tiny.csv"), fifo=fifo,
                             huge=_csv(tmp_path, [0.1, 0.1, 0.1, 1e300], "huge.csv"))
    code, out = _run(_config(tmp_path, network, link), tmp_path, capsys)
    assert code == 2 and words in out.err and "Traceback" not in out.err, out.err
    assert len([line for line in out.err.splitlines() if line.startswith("nsdml:")]) == 1
    assert not (tmp_path / "results").exists()


def test_a_relative_compute_csv_is_read_beside_the_config_not_from_the_working_directory(tmp_path, capsys,
                                                                                         monkeypatch):
    folder = tmp_path / "study"
    _csv(folder.mkdir() or folder, [0.05, 0.1, 0.2, 0.4])
    config = _config(folder, 'compute_model = "csv"\ncompute_csv = "steps.csv"')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no steps.csv here
    code, out = _run(config, tmp_path, capsys)
    assert code == 0, out.err
    (run_dir,) = run_dirs(tmp_path / "results")
    assert str(folder / "steps.csv") in (run_dir / "config.toml").read_text()


@pytest.fixture
def two_runs(tmp_path, capsys):
    """Two finished runs of a tiny config (seeds 0 and 1)."""
    config = _config(tmp_path, link="synthetic")
    for seed in (0, 1):
        assert _run(config, tmp_path, capsys, "--set", f"seed={seed}")[0] == 0
    return run_dirs(tmp_path / "results")


def test_show_survives_an_interrupted_run_holding_a_non_number(two_runs, capsys):
    first, second = two_runs
    record = json.loads((second / "run.json").read_text())
    (second / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    lines = (second / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    for column in ("mean_accuracy", "intended_pairs", "cumulative_energy_j"):
        if column in header:
            cells = lines[-1].split(",")
            cells[header.index(column)] = "notanumber"
            lines[-1] = ",".join(cells)
    (second / "metrics.csv").write_text("\n".join(lines) + "\n")
    links = (second / "links.csv").read_text().splitlines()
    links[-1] = links[-1].replace(links[-1].split(",")[-1], "x")
    (second / "links.csv").write_text("\n".join(links) + "\n")
    assert main(["show", str(first), str(second)]) in (0, 1)
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "interrupted" in out.out


def test_show_survives_a_damaged_config_toml(two_runs, capsys):
    run_dir = two_runs[0]
    text = (run_dir / "config.toml").read_text().replace("rounds = 3", "rounds = {a = 1}")
    (run_dir / "config.toml").write_text(text)
    assert main(["show", str(run_dir)]) in (0, 1)
    assert "Traceback" not in capsys.readouterr().err


def test_compare_survives_a_run_json_made_before_wall_seconds_was_kept(two_runs, tmp_path, capsys):
    for run_dir in two_runs:
        record = json.loads((run_dir / "run.json").read_text())
        record.pop("wall_seconds")
        (run_dir / "run.json").write_text(json.dumps(record))
    code = main(["compare", *map(str, two_runs), "--target", "0.1", "--out", str(tmp_path / "compare")])
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err, out.err


def test_a_finished_async_runs_staleness_csv_is_checked_like_its_other_files(tmp_path, capsys):
    config = _config(tmp_path, ASYNC)
    assert _run(config, tmp_path, capsys)[0] == 0
    (run_dir,) = run_dirs(tmp_path / "results")
    assert "staleness.csv" in json.loads((run_dir / "run.json").read_text())["files"]
    original = (run_dir / "staleness.csv").read_bytes()
    (run_dir / "staleness.csv").unlink()
    assert main(["show", str(run_dir)]) == 1
    assert "is damaged: staleness.csv is missing" in capsys.readouterr().err
    code, out = _run(config, tmp_path, capsys)
    assert code == 0 and "recomputing" in out.err and (run_dir / "staleness.csv").read_bytes() == original


def _npy(header: str) -> bytes:
    """An .npy file (format 1.0) whose header is ``header``, padded as numpy pads it."""
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + bytes(24)


@pytest.mark.parametrize("content", [b"", _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,"),
                                     _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"),
                                     np.random.default_rng(0).bytes(300)],
                         ids=["empty", "damaged npy header", "a bare npy array", "random"])
def test_an_unreadable_checkpoint_is_ignored_with_one_line_and_no_advice_to_unpickle(tmp_path, content):
    from experiments.run import checkpoint

    (tmp_path / checkpoint.FILE).write_bytes(content)
    with pytest.raises(checkpoint.CheckpointError) as caught:
        checkpoint.load(tmp_path, {}, None)
    message = str(caught.value)
    assert message.startswith(f"{checkpoint.FILE} cannot be read") and "pickle" not in message


def test_a_run_with_a_zero_byte_checkpoint_starts_again_from_round_0(tmp_path, capsys):
    from experiments.run import checkpoint

    config = _config(tmp_path, link="synthetic")
    assert _run(config, tmp_path, capsys)[0] == 0
    (run_dir,) = run_dirs(tmp_path / "results")
    original = (run_dir / "metrics.csv").read_bytes()
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    (run_dir / checkpoint.FILE).write_bytes(b"")
    code, out = _run(config, tmp_path, capsys, "--set", "checkpoint_every=1")
    assert code == 0 and "Traceback" not in out.err
    assert "not resuming" in out.err and "starting from round 0" in out.err
    assert (run_dir / "metrics.csv").read_bytes() == original
    shutil.rmtree(tmp_path / "results")
