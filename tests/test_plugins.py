"""Bring your own: the example plugin of learner/README.md run from a config without editing or installing nsdml."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import main
from helpers import run_dirs

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """rounds = 3
devices = 5
[data]
dataset = "digits"
[algorithm]
name = "{name}"
[network]
link_model = "synthetic"
"""


def example_plugin() -> str:
    """The plugin file as learner/README.md shows it (the first Python block after 'Bring your own')."""
    text = (ROOT / "learner" / "README.md").read_text()
    section = text[text.index("## Bring your own"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    (tmp_path / "my_gossip.py").write_text(example_plugin())
    monkeypatch.chdir(tmp_path)  # module:attr references import from the current directory
    yield tmp_path
    sys.modules.pop("my_gossip", None)


def _run(tmp_path, name, capsys, extra=()):
    config = tmp_path / "plugin.toml"
    config.write_text(CONFIG.format(name=name))
    code = main(["run", str(config), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"),
                 "--quiet", *extra])
    return code, capsys.readouterr()


def test_an_algorithm_in_a_module_of_the_current_directory_runs_from_a_config(plugin_dir, capsys):
    code, out = _run(plugin_dir, "my_gossip:NeighbourMean", capsys, ["--set", "algorithm.lr=0.05"])
    assert code == 0, out.err
    (run_dir,) = run_dirs(plugin_dir / "results")
    assert '"status": "done"' in (run_dir / "run.json").read_text()
    written = (run_dir / "config.toml").read_text()
    assert 'name = "my_gossip:NeighbourMean"' in written and "lr = 0.05" in written


def test_an_algorithm_registered_through_an_entry_point_runs_by_its_name(tmp_path, capsys, monkeypatch):
    site = tmp_path / "site"
    (site / "nsdml_example_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "my_gossip.py").write_text(example_plugin())
    info = site / "nsdml_example_plugin-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nsdml-example-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[nsdml.algorithms]\nneighbour_mean = my_gossip:NeighbourMean\n")
    monkeypatch.syspath_prepend(str(site))  # on the path, as an installed package would be; nothing installed
    try:
        code, out = _run(tmp_path, "neighbour_mean", capsys)
        assert code == 0, out.err
        assert main(["algorithms"]) == 0
        assert "neighbour_mean: Local SGD step, then the plain mean" in capsys.readouterr().out
    finally:
        sys.modules.pop("my_gossip", None)


@pytest.mark.parametrize("broken, missing", [
    ("step", "step"),
    ("messages", "messages"),
])
def test_a_plugin_missing_a_method_exits_2_naming_it(plugin_dir, capsys, broken, missing):
    source = example_plugin().replace(f"    def {broken}(", f"    def _{broken}_renamed(")
    (plugin_dir / "broken_gossip.py").write_text(source)
    code, out = _run(plugin_dir, "broken_gossip:NeighbourMean", capsys)
    assert code == 2 and "Traceback" not in out.err
    assert "algorithm.name" in out.err and f"missing method(s) {missing}" in out.err
    assert not (plugin_dir / "results").exists()
    sys.modules.pop("broken_gossip", None)


@pytest.mark.parametrize("name, expected", [
    ("my_gossip:Nothing", "has no attribute 'Nothing'"),
    ("no_such_module:X", "cannot import module 'no_such_module'"),
    ("my_gossip:torch", "not a class"),
])
def test_a_reference_that_does_not_resolve_exits_2_naming_the_field(plugin_dir, capsys, name, expected):
    code, out = _run(plugin_dir, name, capsys)
    assert code == 2 and "algorithm.name" in out.err and expected in out.err and "Traceback" not in out.err


def test_a_plugin_that_is_not_a_dataclass_exits_2(plugin_dir, capsys):
    (plugin_dir / "plain.py").write_text(example_plugin().replace("@dataclass(frozen=True)\n", ""))
    code, out = _run(plugin_dir, "plain:NeighbourMean", capsys)
    assert code == 2 and "dataclass" in out.err
    sys.modules.pop("plain", None)


@pytest.mark.parametrize("module, reference, fixture", [
    ("my_gossip", "my_gossip:NeighbourMean", "algorithm"),  # synchronous: the README's block
    ("my_async_gossip", "my_async_gossip:NewestMean", "async_algorithm"),
])
def test_the_contract_tests_run_against_a_users_class_with_one_option(tmp_path, module, reference, fixture):
    source = example_plugin() if module == "my_gossip" else ASYNC_EXAMPLE
    (tmp_path / f"{module}.py").write_text(source)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_contract.py"), "--algorithm", reference],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))
    assert passed == (ROOT / "tests" / "test_contract.py").read_text().count(f"({fixture}):\n")  # each test, once


def test_model_and_dataset_plugins_by_reference(tmp_path, capsys, monkeypatch):
    (tmp_path / "my_parts.py").write_text('''
import numpy as np
from sklearn.datasets import load_digits

from learner.data import Dataset, stratified_split
from learner.models import BatchedModel, Layer


def two_layers(num_features, num_classes, hidden, image_shape):
    return BatchedModel("two_layers", (Layer(num_features, 7, "representation"), Layer(7, num_classes, "decision")))


def small_digits(test_fraction, seed, root):
    bunch = load_digits()
    x, y = bunch.data.astype(np.float32) / 16.0, bunch.target.astype(np.int64)
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset(x[train], y[train], x[test], y[test], num_classes=10, image_shape=(1, 8, 8))
''')
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "parts.toml"
    config.write_text('rounds = 2\ndevices = 4\n[data]\ndataset = "my_parts:small_digits"\n'
                      '[model]\nname = "my_parts:two_layers"\n[network]\nlink_model = "synthetic"\n')
    try:
        assert main(["run", str(config), "--results", str(tmp_path / "results"), "--quiet"]) == 0
    finally:
        sys.modules.pop("my_parts", None)
    (run_dir,) = run_dirs(tmp_path / "results")
    # The model's size reached ns-3's payload: 64*7+7 + 7*10+10 parameters of float32.
    assert "payload_bytes" in (run_dir / "links.csv").read_text()
    assert int((run_dir / "links.csv").read_text().splitlines()[1].split(",")[2]) == (64 * 7 + 7 + 7 * 10 + 10) * 4


def _broken(plugin_dir, capsys, module, old, new, extra=()):
    """Run the example plugin with ``old`` replaced by ``new`` in its source, as module ``module``."""
    source = example_plugin()
    assert old in source
    (plugin_dir / f"{module}.py").write_text(source.replace(old, new))
    try:
        return _run(plugin_dir, f"{module}:NeighbourMean", capsys, extra)
    finally:
        sys.modules.pop(module, None)


STEP_RETURN = "        return (heard.T @ x) / heard.sum(0)[:, None], None"
BROKEN = [  # (what, old, new, exit code, words the one line must hold)
    ("post_init raises RuntimeError", "        if not 0.0 < self.lr", "        raise RuntimeError('no')\n        if not 0.0 < self.lr",
     2, "algorithm.name: building 'broken_0:NeighbourMean' (its __post_init__) raised RuntimeError: no"),
    ("import exits", "import torch\n", "import sys\nimport torch\nsys.exit(3)\n", 2, "exit(3)"),
    ("field width negative", 'dense("model", dim)', 'dense("model", -5)', 2, "messages(650) returned"),
    ("no message", 'return (Message((dense("model", dim),)),)', "return ()", 2, "messages(650) returned ()"),
    ("message text", 'return (Message((dense("model", dim),)),)', "return ('big',)", 2, "entry 'big'"),
    ("messages raises", 'return (Message((dense("model", dim),)),)', "raise KeyError('d')", 2,
     "messages raised KeyError"),
    ("init raises", "        return None\n\n    def step", "        raise ZeroDivisionError('init')\n\n    def step",
     1, "algorithm broken_6:NeighbourMean: init raised ZeroDivisionError: init"),
    ("step raises", "        x = x - self.lr", "        raise IndexError('oops')\n        x = x - self.lr",
     1, "step raised IndexError: oops"),
    ("step exits", "        x = x - self.lr", "        raise SystemExit(4)\n        x = x - self.lr", 1, "step raised exit(4)"),
    ("step wrong shape", STEP_RETURN, "        return x[:, :3], None", 1, "step returned x_new of shape (5, 3)"),
    ("step bare tensor", STEP_RETURN, "        return x", 1, "step returned a bare tensor of shape (5, 650)"),
    ("step numpy array", STEP_RETURN, "        return x.numpy(), None", 1, "step returned x_new as a numpy.ndarray"),
    ("step wrong dtype", STEP_RETURN, "        return x.double(), None", 1, "torch.float64"),
    ("two exchanges with one declared message", "        heard.fill_diagonal_",
     "        links.exchange()\n        heard.fill_diagonal_", 1,
     "step raised RuntimeError: links.exchange called 2 times in one round; the algorithm declares 1 message(s)"),
]


@pytest.mark.parametrize("index, case", list(enumerate(BROKEN)), ids=[case[0] for case in BROKEN])
def test_a_plugin_failure_is_one_line_naming_the_method_and_no_traceback(plugin_dir, capsys, index, case):
    _, old, new, expected_code, words = case
    code, out = _broken(plugin_dir, capsys, f"broken_{index}", old, new)
    assert code == expected_code, out.err
    assert "Traceback" not in out.err and words in out.err, out.err
    (message,) = [line for line in out.err.splitlines() if line.startswith("nsdml:")]  # one line
    assert words in message and any(verb in message for verb in ("contract wants", " raised ", "cannot import")), message
    if expected_code == 1:  # the run started: it is marked failed with the reason
        (run_dir,) = run_dirs(plugin_dir / "results")
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "failed" and "PluginFailure" in record["error"]
    else:
        assert not (plugin_dir / "results").exists()


def test_debug_prints_the_plugins_traceback(plugin_dir, capsys):
    code, out = _broken(plugin_dir, capsys, "broken_debug", "        x = x - self.lr",
                        "        raise IndexError('oops')\n        x = x - self.lr", extra=["--debug"])
    assert code == 1 and "Traceback" in out.err and "broken_debug.py" in out.err


def test_a_decentralized_plugin_that_never_exchanges_runs_with_a_warning(plugin_dir, capsys):
    code, out = _broken(plugin_dir, capsys, "lonely", "        heard = links.exchange().to(x.dtype)",
                        "        heard = torch.zeros(x.shape[0], x.shape[0], dtype=x.dtype)")
    assert code == 0 and "warning: algorithm lonely:NeighbourMean never called links.exchange" in out.err
    (run_dir,) = run_dirs(plugin_dir / "results")
    assert "never called links.exchange" in json.loads((run_dir / "run.json").read_text())["warnings"][0]


def test_the_shipped_example_is_the_readme_block_and_runs_by_module_path(tmp_path, capsys):
    assert (ROOT / "experiments" / "examples" / "my_gossip.py").read_text() == example_plugin()
    code, out = _run(tmp_path, "experiments.examples.my_gossip:NeighbourMean", capsys)
    assert code == 0, out.err
    (run_dir,) = run_dirs(tmp_path / "results")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "done"
    from experiments.config import parse_config

    config = parse_config({"rounds": 3, "devices": 5, "data": {"dataset": "digits"},
                           "algorithm": {"name": "experiments.examples.my_gossip:NeighbourMean"},
                           "network": {"link_model": "synthetic"}})
    assert any(path.endswith("experiments/examples/my_gossip.py") for path in config.plugin_sources)  # fingerprinted


ASYNC_CONFIG = CONFIG.replace('link_model = "synthetic"', 'link_model = "ideal"\nschedule = "async"')
ASYNC_EXAMPLE = (ROOT / "experiments" / "examples" / "my_async_gossip.py").read_text()


def _async_run(plugin_dir, capsys, module, source):
    (plugin_dir / f"{module}.py").write_text(source)
    config = plugin_dir / f"{module}.toml"
    config.write_text(ASYNC_CONFIG.format(name=f"{module}:NewestMean"))
    try:
        code = main(["run", str(config), "--results", str(plugin_dir / "results"), "--cache",
                     str(plugin_dir / "cache"), "--quiet"])
    finally:
        sys.modules.pop(module, None)
    return code, capsys.readouterr()


def test_an_asynchronous_plugin_runs_by_module_and_class(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out = _async_run(tmp_path, capsys, "my_async_gossip", ASYNC_EXAMPLE)
    assert code == 0, out.err
    (run_dir,) = run_dirs(tmp_path / "results")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "done"
    assert (run_dir / "staleness.csv").read_text().count("\n") > 5  # it merged its neighbours' messages


MERGE_RETURN = "        return total / (1.0 + used.sum(0))[:, None].to(x.dtype), state, used"
BROKEN_ASYNC = [  # (what, old, new, exit code, words the one 'nsdml:' line must hold)
    ("no merge", "    def merge(", "    def _merge_renamed(", 2, "missing method(s) merge"),
    ("no local_steps field", "    local_steps: int = 1\n", "", 2, "needs a local_steps field"),
    ("two messages", 'return (Message((dense("model", dim),)),)',
     'return (Message((dense("model", dim),)),) * 2', 2, "at most 1"),
    ("message of another width", "    def message(self, x, state):\n        return x",
     "    def message(self, x, state):\n        return x[:, :5]", 1, "message returned a bare tensor of shape (5, 5)"),
    ("merge uses what it did not receive", MERGE_RETURN,
     "        return x, state, torch.ones_like(used)", 1, "merge marked a message used that is not in the inbox"),
    ("local of another shape", "        return sgd_steps(x, grad_fn, self.lr, self.local_steps, active), state",
     "        return x[:2], state", 1, "local returned x_new of shape (2, 650)"),
]


@pytest.mark.parametrize("index, case", list(enumerate(BROKEN_ASYNC)), ids=[case[0] for case in BROKEN_ASYNC])
def test_a_broken_asynchronous_plugin_is_refused_with_one_line(tmp_path, capsys, monkeypatch, index, case):
    monkeypatch.chdir(tmp_path)
    _, old, new, expected_code, words = case
    assert old in ASYNC_EXAMPLE
    code, out = _async_run(tmp_path, capsys, f"broken_async_{index}", ASYNC_EXAMPLE.replace(old, new))
    assert code == expected_code, out.err
    (message,) = [line for line in out.err.splitlines() if line.startswith("nsdml:")]  # one line
    assert words in message and "Traceback" not in out.err, out.err
