"""The docs site's generated pages come from the config dataclasses: every field in the reference with the
rule its check states, a JSON Schema every shipped config and sweep satisfies and a bad one fails, and the
site builds with mkdocs (the docs extra; skipped without it)."""

import json
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from experiments.docs import SECTIONS, config_reference, config_schema, write_site_sources

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*ROOT.glob("experiments/configs/*.toml"), *ROOT.glob("experiments/sweeps/*.toml")])


def test_the_reference_lists_every_config_field_with_its_checked_rule_and_comment():
    text = config_reference()
    for section, cls, skip in SECTIONS:
        for f in fields(cls):
            if f.name not in skip:
                assert f"`{section + '.' if section else ''}{f.name}`" in text, (section, f.name)
    assert "| `data.alpha` | `0.1` | a number in (0, 1e6] | Dirichlet concentration" in text
    assert "| `network.barrier_timeout_from` |" in text and "lr = 0.1" in text  # algorithms' hyperparameters too


def test_every_shipped_config_and_sweep_satisfies_the_schema_and_bad_ones_do_not():
    jsonschema = pytest.importorskip("jsonschema")
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert SHIPPED
    for path in SHIPPED:
        assert not list(validator.iter_errors(tomllib.loads(path.read_text()))), path
    for bad in ({"data": {"alpha": -1.0}}, {"data": {"colour": 1}}, {"rounds": "many"}, {"rounds": 0},
                {"network": {"schedule": "sometimes"}}, {"sweep": {"target_accuracy": 2}}):
        assert list(validator.iter_errors(bad)), bad
    assert not list(validator.iter_errors({"seed": [0, 1], "network": {"density": [0.2, 0.5]}}))  # a sweep


def test_the_site_builds(tmp_path):
    pytest.importorskip("mkdocs")
    yaml = pytest.importorskip("yaml")
    write_site_sources(tmp_path / "docs")
    schema = json.loads((tmp_path / "docs" / "nsdml-config.schema.json").read_text())
    assert schema == json.loads(json.dumps(config_schema()))
    settings = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    settings.update(docs_dir=str(tmp_path / "docs"), site_dir=str(tmp_path / "site"))
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(settings))
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--quiet", "--config-file",
                           str(tmp_path / "mkdocs.yml")], capture_output=True, text=True, timeout=300,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "site" / "config-reference" / "index.html").read_text()
    assert "data.alpha" in page and (tmp_path / "site" / "nsdml-config.schema.json").is_file()
