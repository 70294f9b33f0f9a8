"""Reports that check themselves: a report's measured text, re-rendered from its committed per-seed CSV, equals
the committed text, so no number in a table or a reading can drift from the runs it came from."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "experiments" / "reports"


def committed_section(report: str, extra: str) -> str:
    """The text a campaign's ``--extra`` table put in a report's measured block."""
    text = (REPORTS / report).read_text()
    return text.split(f"#### `{extra}`", 1)[1].split("Per-seed figures of every run", 1)[0].strip()


RENDERED = {  # report -> (its campaign module, the sweep file holding its target, the table it renders)
    "async": ("async_table", "async_table.toml"),
    "robust": ("robust_table", "robust_table.toml"),
    "energy": ("energy_table", "energy_table.toml"),
    "esgd": ("esgd_table", "esgd_table.toml"),
    "detag": ("detag_table", "detag_paper.toml"),
}


def rendered(report: str, runs: pd.DataFrame | None = None) -> str:
    module, sweep = RENDERED[report]
    render = importlib.import_module(f"experiments.campaigns.{module}").render
    runs = pd.read_csv(REPORTS / f"{report}-runs.csv") if runs is None else runs
    target = tomllib.loads((ROOT / "experiments/configs" / sweep).read_text())["sweep"]["target_accuracy"]
    return render(runs, target)


@pytest.mark.parametrize("report", sorted(RENDERED))
def test_a_report_re_renders_from_its_committed_runs_csv(report):
    assert rendered(report).strip() == committed_section(f"{report}.md", f"{RENDERED[report][0]}.md")


def changed_lines(report: str, algorithm: str, figure: str, delta: float, network: str = "ns3") -> list[str]:
    """The committed per-seed CSV re-rendered with one evaluation run's ``figure`` moved by ``delta`` (the first
    of ``algorithm`` on ``network`` that reached the target): the old text of every line that changed other than in
    a Holm p (Holm adjusts the report's p-values together)."""
    runs = pd.read_csv(REPORTS / f"{report}-runs.csv")
    chosen = runs[~runs["sweep"].str.endswith("-tune") & runs[figure].notna()
                  & (runs["algorithm.name"] == algorithm) & (runs["network.link_model"] == network)].index[0]
    changed = runs.copy()
    changed.loc[chosen, figure] += delta
    before, after = rendered(report, runs).splitlines(), rendered(report, changed).splitlines()
    assert len(before) == len(after)
    differing = [(old, new) for old, new in zip(before, after) if old != new]
    assert differing
    holm = re.compile(r"Holm p [0-9.e+-]+")
    return [old for old, new in differing if holm.sub("", old) != holm.sub("", new)]


def test_a_changed_value_in_the_async_runs_csv_changes_exactly_the_text_that_depends_on_it():
    """One seed's seconds of one evaluation run (AD-PSGD over ns-3), altered: every line that changes is about
    AD-PSGD over ns-3 (its setting row, its paired rows, the readings quoting them), or differs only in a Holm p
    (Holm adjusts the report's p-values together); the tuning tables and every other row stay."""
    for old in changed_lines("async", "adpsgd", "time_to_target_s", 7.0):
        if old.startswith("| "):
            assert "| ns3 |" in old and "adpsgd" in old and "lr " not in old, old
        else:
            assert "over ns-3" in old or "AD-PSGD" in old, old


def test_a_changed_value_in_the_energy_runs_csv_changes_exactly_the_text_that_depends_on_it():
    """One seed's joules to the target of CHOCO-SGD over ns-3, altered: every line that changes is about CHOCO-SGD
    over ns-3 (its setting row, its paired rows, the readings quoting them) or differs only in a Holm p."""
    for old in changed_lines("energy", "choco_sgd", "energy_to_target_j", 50.0):
        if old.startswith("| "):
            assert ("| ns3 | CHOCO-SGD |" in old or "| ns3 | choco_sgd − dpsgd |" in old
                    or "| choco_sgd | ns3 − ideal |" in old), old
        else:
            assert "CHOCO-SGD" in old and ("**ns3.**" in old or "ns-3 against its ideal control" in old), old


def test_a_changed_value_in_the_detag_runs_csv_changes_exactly_the_text_that_depends_on_it():
    """One seed's seconds to the target of SGP in the paper's setting, altered: every line that changes is SGP's
    there (its setting row, its paired row against DeTAG) or a reading of the paper's setting that names SGP, or
    differs only in a Holm p."""
    text = rendered("detag")
    wireless_readings = text.split("802.11a over ns-3", 1)[1].splitlines() if "802.11a over ns-3" in text else []
    for old in changed_lines("detag", "sgp", "time_to_target_s", 7.0, network="fixed_graph"):
        if old.startswith("| "):
            assert old.startswith("| shuffled ") and ("| SGP |" in old or "| SGP − DeTAG |" in old), old
        else:
            assert "SGP" in old and old not in wireless_readings, old


def test_check_reports_names_the_report_and_the_cell_when_an_update_changes(tmp_path, monkeypatch, capsys):
    """A deliberate change to the update (every gradient 1.5 times larger) makes the async report's cheapest
    cell differ from its committed row: check-reports exits 1 naming the report, the run and the figure."""
    import learner.devices
    from experiments.campaigns import check_reports

    original = learner.devices.batch_gradients
    monkeypatch.setattr(learner.devices, "batch_gradients",
                        lambda *args: (lambda grad, loss: (1.5 * grad, loss))(*original(*args)))
    assert check_reports.main(["async", "--work", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "async: run " in err and "in async-runs.csv" in err and "final_acc is" in err, err
