"""`nsdml plot` and the figures' honesty rules: every varying field on an axis, intervals inside [0, 1],
few seeds drawn one by one, k/n where seeds never reached, an algorithm's colour the same in every figure,
and the topology's links as one coloured collection that marks one-way pairs."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.analysis.figures import (PlotError, _draw_points, colour_of, default_layout,  # noqa: E402
                                          plot_figure)
from experiments.analysis.plots import heard_pairs  # noqa: E402
from experiments.cli import main  # noqa: E402
from experiments.run.sweep import expand_sweep, run_sweep  # noqa: E402

SWEEP = {"rounds": 3, "devices": 5, "seed": [0, 1], "sweep": {"name": "fig", "target_accuracy": 0.3},
         "data": {"dataset": "digits"}, "algorithm": {"name": ["dpsgd", "hyperprism"]},
         "network": {"link_model": "synthetic", "density": [0.4, 0.9]}}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    run_sweep(expand_sweep(SWEEP), root / "results", root / "cache", quiet=True)
    return root / "results" / "sweeps" / "fig"


def test_a_varying_field_on_no_axis_is_refused_naming_it(swept, capsys):
    assert main(["plot", str(swept), "--x", "round", "--hue", "algorithm.name"]) == 2
    err = capsys.readouterr().err
    assert "network.density differs between the plotted runs" in err and "Traceback" not in err
    assert main(["plot", str(swept), "--x", "network.density", "--y", "final_acc"]) == 2
    assert "algorithm.name differs" in capsys.readouterr().err
    assert main(["plot", str(swept), "--x", "round", "--hue", "algorithm.name", "--where", "network.density=0.4"]) == 0
    assert main(["plot", str(swept), "--x", "round", "--hue", "algorithm.name", "--col", "network.density"]) == 0
    assert (swept / "mean_accuracy_vs_round_by_name_by_density.png").stat().st_size > 0
    assert main(["plot", str(swept), "--x", "round", "--hue", "colour"]) == 2
    assert "--hue: 'colour' is not a config field" in capsys.readouterr().err
    assert main(["plot", str(swept), "--x", "network.density", "--y", "nonsense", "--hue", "algorithm.name"]) == 2
    assert "--y: 'nonsense' is not a figure of summary.csv" in capsys.readouterr().err


def test_plot_writes_pdf_and_svg_and_names_each_algorithms_own_learning_rate(swept, tmp_path, capsys):
    out = tmp_path / "f.pdf"
    assert main(["plot", str(swept), "--x", "network.density", "--y", "max_acc", "--hue", "algorithm.name",
                 "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF")
    assert main(["plot", str(swept), "--x", "round", "--hue", "algorithm.name", "--col", "network.density",
                 "--format", "svg"]) == 0
    svg = (swept / "mean_accuracy_vs_round_by_name_by_density.svg").read_text()
    assert svg.startswith("<?xml") and "learning rate 0.01" in svg and "learning rate 0.1 " in svg


def test_the_sweeps_own_figures_use_the_same_rules(swept):
    for name in ("accuracy_rounds", "accuracy_steps", "accuracy_time", "accuracy_energy", "final_acc_vs_density",
                 "conv_rounds_vs_density"):
        assert (swept / f"{name}.png").stat().st_size > 0
    assert default_layout(["algorithm.name", "network.link_model", "network.density"], x="round") == {
        "hue": "algorithm.name", "style": "network.link_model", "col": "network.density", "row": None}
    assert default_layout(["a", "b", "c", "d"], x="round") is None  # more than a figure holds: left out, said


def _points(values, bounded=True):
    figure, axis = plt.subplots()
    group = pd.DataFrame({"x": [1.0] * len(values), "y": values})
    note = _draw_points(axis, group, "x", "y", "black", "-", bounded, slot=0)
    return figure, axis, note


def test_an_accuracys_interval_is_clipped_to_one_and_few_seeds_are_drawn_one_by_one():
    values = [1.0, 1.0, 0.4, 1.0, 0.98]  # mean 0.876, t interval reaches past 1
    figure, axis, note = _points(values)
    (bars,) = [c for c in axis.collections if isinstance(c, matplotlib.collections.LineCollection)]
    top = max(segment[:, 1].max() for segment in bars.get_segments())
    assert top == pytest.approx(1.0) and note == "5 seeds, 95 % interval"
    plt.close(figure)
    figure, axis, note = _points([0.2, 0.5, 0.9])
    (dots,) = axis.collections
    assert sorted(dots.get_offsets()[:, 1]) == [0.2, 0.5, 0.9] and note == "3 seeds drawn"
    plt.close(figure)


def test_a_figure_some_seeds_never_reached_shows_k_of_n_and_no_survivor_mean():
    figure, axis, note = _points([12.0, math.nan, 15.0, math.nan], bounded=False)
    assert [text.get_text() for text in axis.texts] == ["2/4"] and note == "k/n reached"
    assert not [line for line in axis.lines if len(line.get_xdata())]  # no mean line through the survivors
    plt.close(figure)


def test_an_algorithm_keeps_its_colour_whatever_else_is_in_the_figure():
    assert colour_of("algorithm.name", "hyperprism", ["dpsgd", "hyperprism"]) == \
        colour_of("algorithm.name", "hyperprism", ["hyperprism"]) != colour_of("algorithm.name", "dpsgd", ["dpsgd"])


def test_topology_pairs_keep_the_better_direction_and_mark_one_way_links():
    rates = np.array([[np.nan, 0.5, 0.0], [0.9, np.nan, 0.0], [0.3, 0.0, np.nan]])
    i, j, rate, one_way = heard_pairs(rates)
    assert list(zip(i, j)) == [(0, 1), (0, 2)]  # 1-2 never delivered: no segment
    assert list(rate) == [0.9, 0.3] and list(one_way) == [False, True]


def test_plot_refuses_a_directory_without_a_summary(tmp_path, capsys):
    assert main(["plot", str(tmp_path), "--x", "round"]) == 2
    assert "no summary.csv there" in capsys.readouterr().err
    with pytest.raises(PlotError, match="no finished run"):
        plot_figure(pd.DataFrame({"status": ["failed"]}), tmp_path, tmp_path / "f.png", "round", "mean_accuracy")
