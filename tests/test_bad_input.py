"""Hostile input, table-driven: every case exits 2 with a message naming the field, no traceback, nothing written.

Each bad snippet is tried as a run file (``nsdml run``) and inside a sweep file
(``nsdml sweep``, with a seed axis), plus the cases only a sweep can have. The
cases come from trying the CLI as a hostile user would: types the TOML parser
accepts but the config cannot (an integer past the float range, a table where
a value belongs, nesting thousands deep), names that would escape the results
root, settings that are each valid but do not go together, and sizes too
large for the machine.
"""

import os
from dataclasses import fields

import pytest

from experiments.cli import main
from experiments.config import DataConfig, NetworkConfig
from learner.algorithms.registry import ALGORITHMS
from ns3_scenarios.scenario import ScenarioConfig

BASE = """{top}
[data]
dataset = "digits"
{data}
[algorithm]
{algorithm}
[network]
link_model = "synthetic"
{network}
"""
HUGE = "1" + "0" * 400  # an integer TOML accepts and no float can hold


def _float_fields(cls, skip=()):
    return [f.name for f in fields(cls) if isinstance(f.default, float) and f.name not in skip]


def run_cases():
    """(description, {top, data, algorithm, network} snippets or a whole text, field the message must name)."""
    cases = []
    # Any float field given an integer above the float range: OverflowError before, now a clear message.
    for name in _float_fields(DataConfig):
        cases.append((f"huge data.{name}", {"data": f"{name} = {HUGE}"}, f"data.{name}"))
    for name in _float_fields(NetworkConfig) + _float_fields(ScenarioConfig):
        cases.append((f"huge network.{name}", {"network": f"{name} = {HUGE}"}, f"network.{name}"))
    for algorithm in ("dpsgd", "hyperprism", "esgd", "adom", "choco_sgd"):
        for name in [f.name for f in fields(ALGORITHMS[algorithm]) if isinstance(f.default, float)][:3]:
            cases.append((f"huge {algorithm}.{name}",
                          {"algorithm": f'name = "{algorithm}"\n{name} = {HUGE}'}, f"algorithm.{name}"))
    # Every registered algorithm: a hyperparameter it does not have, and a learning rate out of range.
    for algorithm in sorted(ALGORITHMS):
        cases.append((f"{algorithm} unknown field", {"algorithm": f'name = "{algorithm}"\nwarp = 2'},
                      "algorithm.warp"))
        cases.append((f"{algorithm} negative lr", {"algorithm": f'name = "{algorithm}"\nlr = -1.0'}, "algorithm.lr"))
    # A section given as a value, and values of the wrong shape.
    for section in ("data", "model", "network", "algorithm"):
        cases.append((f"{section} = 5", {"raw": f'name = "hostile"\n{section} = 5\n'}, section))
        cases.append((f"{section} = string", {"raw": f'name = "hostile"\n{section} = "dpsgd"\n'}, section))
    cases += [
        ("algorithm.name = 5", {"algorithm": "name = 5"}, "algorithm.name"),
        ("algorithm.name = ''", {"algorithm": 'name = ""'}, "algorithm.name"),
        ("algorithm.name = table", {"algorithm": "name = {a = 1}"}, "algorithm.name"),
        ("unknown algorithm field", {"algorithm": 'name = "dpsgd"\nmomentum = 0.9'}, "algorithm.momentum"),
        ("algorithm lr as text", {"algorithm": 'lr = "fast"'}, "algorithm.lr"),
        ("algorithm lr as bool", {"algorithm": "lr = true"}, "algorithm.lr"),
        ("target_accuracy in a run", "target_accuracy = 0.5\n", "target_accuracy"),
        # Nesting thousands deep: RecursionError before.
        ("deep array", "x = " + "[" * 3000 + "]" * 3000 + "\n", "nested"),
        ("deep inline table", "x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n", "nested"),
        ("deep array in a section", {"network": "density = " + "[" * 40 + "0.5" + "]" * 40}, "nested"),
        # Threshold SGD offline failed at round 0 after ns-3 had simulated everything.
        ("threshold_sgd offline", {"algorithm": 'name = "threshold_sgd"', "network": 'topology = "access_point"'},
         "network.mode"),
        # The wrong architecture: a server algorithm without the access point, a decentralized one with it.
        ("fedavg ad hoc", {"algorithm": 'name = "fedavg"'}, "network.topology"),
        ("dpsgd through an access point", {"network": 'topology = "access_point"'}, "network.topology"),
        ("access point over tcp", {"algorithm": 'name = "fedavg"',
                                   "network": 'topology = "access_point"\ntransport = "tcp"'}, "network.transport"),
        # Too large for the machine: MemoryError before, leaving a "running" folder.
        ("huge trace", {"top": "rounds = 100000\ndevices = 1000"}, "rounds, devices"),
        # Names that become directories.
        ("name with four-byte characters", {"top": 'name = "' + "\U0001F600" * 64 + '"'}, "name"),
        ("name with a slash", {"top": 'name = "../escaped"'}, "name"),
        ("name empty", {"top": 'name = ""'}, "name"),
        ("name too long", {"top": 'name = "' + "a" * 65 + '"'}, "name"),
        ("name as a number", {"top": "name = 5"}, "name"),
        ("name with a space", {"top": 'name = "a b"'}, "name"),
        ("seed as float", {"top": "seed = 1.5"}, "seed"),
        ("seed huge", {"top": f"seed = {HUGE}"}, "seed"),
        ("devices huge", {"top": f"devices = {HUGE}"}, "devices"),
        ("rounds negative", {"top": "rounds = -1"}, "rounds"),
        ("eval_every as bool", {"top": "eval_every = true"}, "eval_every"),
        ("fanout with broadcast", {"network": "fanout = 2"}, "network.fanout"),
        ("start jitter past the deadline", {"network": "deadline_s = 0.5\nstart_jitter_s = 0.6"},
         "network.start_jitter_s"),
        ("online with synthetic", {"network": 'mode = "online"'}, "network.mode"),
        ("worker timeout 0", {"network": "worker_timeout_s = 0"}, "network.worker_timeout_s"),
        ("dataset unknown", {"raw": 'name = "hostile"\n[data]\ndataset = "imagenet"\n'}, "data.dataset"),
        ("batch size 0", {"data": "batch_size = 0"}, "data.batch_size"),
        ("alpha nan", {"data": "alpha = nan"}, "data.alpha"),
        ("density inf", {"network": "density = inf"}, "network.density"),
        ("density as array", {"network": "density = [0.5]"}, "network.density"),
        ("unknown section", {"raw": 'name = "hostile"\n[colour]\nred = 1\n'}, "colour"),
        ("unknown network field", {"network": "speed = 3"}, "network.speed"),
        # TOML dates and times: a JSON round-trip raised TypeError before.
        ("TOML date as seed", {"top": "seed = 1979-05-27"}, "seed"),
        ("TOML time as density", {"network": "density = 12:00:00"}, "network.density"),
        ("TOML datetime as alpha", {"data": "alpha = 1979-05-27T07:32:00Z"}, "data.alpha"),
        ("TOML local datetime as a hyperparameter", {"algorithm": "lr = 1979-05-27T07:32:00"}, "algorithm.lr"),
        ("TOML date as a name", {"top": "name = 1979-05-27"}, "name"),
        # data.root = "" with download put MNIST/raw/ in the working directory.
        ("data.root empty", {"data": 'root = ""\ndownload = true'}, "data.root"),
        # Run names that become directories read as options.
        ("name '-'", {"top": 'name = "-"'}, "name"),
        ("name '--'", {"top": 'name = "--"'}, "name"),
        ("name '-rf'", {"top": 'name = "-rf"'}, "name"),
        ("checkpoint_every negative", {"top": "checkpoint_every = -1"}, "checkpoint_every"),
        ("eval_every_s negative", {"top": "eval_every_s = -2.0"}, "eval_every_s"),
        ("compute model unknown", {"network": 'compute_model = "gaussian"'}, "network.compute_model"),
        ("stragglers faster", {"network": 'compute_model = "stragglers"\nstraggler_slowdown = 0.5'},
         "network.straggler_slowdown"),
        ("compute csv without the csv model", {"network": 'compute_csv = "steps.csv"'}, "network.compute_csv"),
        ("csv model without a file", {"network": 'compute_model = "csv"'}, "network.compute_csv"),
        ("csv model, no such file", {"network": 'compute_model = "csv"\ncompute_csv = "/no/such/steps.csv"'},
         "network.compute_csv"),
        ("checkpoint_every_s as text", {"top": 'checkpoint_every_s = "often"'}, "checkpoint_every_s"),
    ]
    cases.append(("huge MLP", {"top": "devices = 1000", "model": 'name = "mlp"\nhidden = 10000'}, "rounds, devices"))
    return cases


def _text(snippets) -> str:
    if isinstance(snippets, dict) and "raw" in snippets:
        return snippets["raw"]
    if isinstance(snippets, str):
        snippets = {"top": snippets}
    parts = {"top": "", "data": "", "algorithm": "", "network": ""} | snippets
    top = {"name": '"hostile"', "rounds": "2", "devices": "4"}  # a snippet's top-level keys replace these
    for line in filter(None, parts["top"].splitlines()):
        key, _, value = line.partition(" = ")
        top[key] = value
    parts["top"] = "\n".join(f"{key} = {value}" for key, value in top.items())
    text = BASE.format(**{k: parts[k] for k in ("top", "data", "algorithm", "network")})
    if "model" in parts:
        text += "[model]\n" + parts["model"] + "\n"
    return text


def sweep_cases():
    """Cases only a sweep file can have (before this issue: tracebacks, escapes or silent acceptance)."""
    def sweep(top="", sweep_table="", extra=""):
        return (f'name = "s"\nrounds = 2\ndevices = 4\n{top}\n[data]\ndataset = "digits"\n'
                f'[network]\nlink_model = "synthetic"\n{sweep_table}\n{extra}')
    return [
        ("sweep name escapes", sweep(sweep_table='[sweep]\nname = "../../escaped"'), "sweep.name"),
        ("sweep name empty", sweep(sweep_table='[sweep]\nname = ""'), "sweep.name"),
        ("sweep name number", sweep(sweep_table="[sweep]\nname = 5"), "sweep.name"),
        ("sweep name list", sweep(sweep_table='[sweep]\nname = ["a", "b"]'), "sweep.name"),
        ("sweep name absolute", sweep(sweep_table='[sweep]\nname = "/tmp/x"'), "sweep.name"),
        ("sweep = 5", sweep(top="sweep = 5"), "sweep"),
        ("sweep = []", sweep(top="sweep = []"), "sweep"),
        ("sweep = 'abc'", sweep(top='sweep = "abc"'), "sweep"),
        ("algorithm = [5]", sweep(top="algorithm = [5]"), "algorithm"),
        ("algorithm = ['ab']", sweep(top='algorithm = ["ab"]'), "algorithm"),
        ("algorithm name [5]", sweep(extra="[algorithm]\nname = [5]"), "algorithm.name"),
        ("algorithm name typo", sweep(extra='[algorithm]\nname = ["dpsgd", "dpgsd"]'), "algorithm.name"),
        ("override for an absent algorithm", sweep(extra='[algorithm]\nname = ["dpsgd"]\n'
                                                         "[algorithm_overrides.dpgsd]\nlr = 0.1"),
         "algorithm_overrides.dpgsd"),
        ("override renames", sweep(extra='[algorithm]\nname = ["dpsgd", "dsgt"]\n'
                                         '[algorithm_overrides.dpsgd]\nname = "dsgt"'),
         "algorithm_overrides.dpsgd.name"),
        ("override not a table", sweep(top="algorithm_overrides = 5"), "algorithm_overrides"),
        ("target_accuracy = true", sweep(sweep_table="[sweep]\ntarget_accuracy = true"), "sweep.target_accuracy"),
        ("target_accuracy 0", sweep(sweep_table="[sweep]\ntarget_accuracy = 0"), "sweep.target_accuracy"),
        ("target_accuracy text", sweep(sweep_table='[sweep]\ntarget_accuracy = "high"'), "sweep.target_accuracy"),
        ("unknown sweep field", sweep(sweep_table="[sweep]\nworkers = 2"), "sweep.workers"),
        ("duplicate seeds", sweep(top="seed = [0, 0]"), "seed"),
        ("duplicate densities 1 and 1.0", sweep(sweep_table="", extra="").replace(
            'link_model = "synthetic"', 'link_model = "synthetic"\ndensity = [1, 1.0]'), "network.density"),
        ("duplicate algorithms", sweep(extra='[algorithm]\nname = ["dpsgd", "dpsgd"]'), "algorithm.name"),
        ("empty axis", sweep(top="seed = []"), "seed"),
        ("a million runs", sweep(top=f"seed = {list(range(1000))}").replace(
            'link_model = "synthetic"', f'link_model = "synthetic"\ndensity = {[round(0.001 * k, 3) for k in range(1, 1001)]}'),
         "seed"),
        ("huge value on an axis", sweep(top=f"seed = [0, {HUGE}]"), "seed"),
        ("threshold_sgd offline in a sweep", sweep(extra='[algorithm]\nname = ["dense_sgd", "threshold_sgd"]').replace(
            'link_model = "synthetic"', 'link_model = "synthetic"\ntopology = "access_point"'), "network.mode"),
    ]


RUN_CASES = run_cases()
SWEEP_CASES = sweep_cases()
ALL = ([(f"run: {d}", "run", _text(s), f) for d, s, f in RUN_CASES]
       + [(f"run file as a sweep: {d}", "sweep", "seed = [0, 1]\n" + _text(s), f) for d, s, f in RUN_CASES
          if "seed" not in str(s) and "density = [" not in str(s)]  # a list is an axis in a sweep
       + [(f"sweep: {d}", "sweep", text, f) for d, text, f in SWEEP_CASES])


def test_there_are_at_least_200_distinct_inputs():
    assert len({text for _, _, text, _ in ALL}) >= 200


@pytest.mark.parametrize("description, command, text, field", ALL, ids=[case[0] for case in ALL])
def test_bad_input_exits_2_naming_the_field_with_no_traceback_and_writes_nothing(
        tmp_path, capsys, description, command, text, field):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code = main([command, str(path), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")])
    message = capsys.readouterr().err
    assert code == 2, message
    assert message.startswith("nsdml: config error:") and "Traceback" not in message
    assert field in message, message
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_a_sweep_file_name_with_a_space_is_refused_as_the_sweep_name(tmp_path, capsys):
    path = tmp_path / "my sweep.toml"
    path.write_text('rounds = 2\ndevices = 4\nseed = [0, 1]\n[data]\ndataset = "digits"\n'
                    '[network]\nlink_model = "synthetic"\n')
    assert main(["sweep", str(path), "--results", str(tmp_path / "results")]) == 2
    assert "sweep.name" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_fifo_as_the_config_is_refused_instead_of_blocking(tmp_path, capsys):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    assert main(["run", str(fifo), "--results", str(tmp_path / "results")]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_a_toml_date_given_with_set_is_refused_naming_the_field(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text(_text({}))
    assert main(["run", str(path), "--results", str(tmp_path / "results"), "--set", "seed=1979-05-27"]) == 2
    message = capsys.readouterr().err
    assert message.startswith("nsdml: config error: seed: 1979-05-27 is a TOML date") and "Traceback" not in message
    assert not (tmp_path / "results").exists()


def test_a_ring_with_topology_degree_0_is_not_told_about_circulants(tmp_path, capsys):
    path = tmp_path / "ring.toml"
    path.write_text(_text({"network": 'topology = "ring"\ntopology_degree = 0'}).replace(
        'link_model = "synthetic"', 'link_model = "fixed_graph"'))
    assert main(["run", str(path), "--results", str(tmp_path / "results")]) == 2
    message = capsys.readouterr().err
    assert "network.topology_degree: 0" in message and "circulant\"" in message and "for a circulant" not in message


def test_checkpoints_with_online_mode_are_refused(tmp_path, capsys):
    path = tmp_path / "online.toml"
    path.write_text(_text({"top": "checkpoint_every = 5", "network": 'mode = "online"'}).replace(
        'link_model = "synthetic"', 'link_model = "ns3"'))
    assert main(["run", str(path), "--results", str(tmp_path / "results")]) == 2
    assert "checkpoint_every: 5 is not allowed; expected 0 with network.mode" in capsys.readouterr().err


def test_an_unusable_data_root_with_download_names_the_data_root_not_the_results(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = tmp_path / "mnist.toml"
    path.write_text(_text({"data": f'root = "{blocker / "data"}"\ndownload = true'}).replace(
        'dataset = "digits"', 'dataset = "mnist"'))
    code = main(["run", str(path), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")])
    message = capsys.readouterr().err
    assert code == 1 and "Traceback" not in message, message
    assert f"nsdml: data.root: cannot write the mnist files under {blocker / 'data'}" in message
    assert "cannot write results" not in message


def test_a_ladder_rung_through_an_access_point_is_refused(tmp_path, capsys):
    path = tmp_path / "rung.toml"
    path.write_text(_text({"algorithm": 'name = "fedavg"', "network": 'topology = "access_point"'}).replace(
        'link_model = "synthetic"', 'link_model = "ns3_geometry"'))
    assert main(["run", str(path), "--results", str(tmp_path / "results")]) == 2
    assert "network.topology: 'access_point' is not allowed; expected \"adhoc\" with link_model = 'ns3_geometry'" \
        in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
