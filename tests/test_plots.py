"""The app's figures say what they show: labelled, colour-matched, whole epochs, no folding."""
from __future__ import annotations

import numpy as np

from app import plots


def test_timeline_top_squares_use_the_lines_colours_and_are_labelled():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    fig = plots.timeline(probs, [(0, 1), (1, 2), (2, 3)], ["wave", "clap", "jump"])
    lines = {t.name: t.line.color for t in fig.data if t.mode == "lines+markers"}
    squares = next(t for t in fig.data if t.mode == "markers")
    assert "top class" in squares.name and squares.showlegend is not False
    assert list(squares.marker.color) == [lines["wave"], lines["clap"], lines["jump"]]


def test_temporal_matrix_ticks_are_whole_steps():
    fig = plots.heatmap(np.eye(2), "t", "key", "query")
    assert list(fig.layout.xaxis.tickvals) == [0, 1] and list(fig.layout.xaxis.ticktext) == ["1", "2"]
    assert list(fig.layout.yaxis.tickvals) == [0, 1]


def test_received_curve_runs_in_clip_order_without_fill():
    times = [0.4, 0.5, 0.0, 0.1]  # a looped clip: source times go back
    fig = plots.received_curve(np.array([0.1, 0.4, 0.3, 0.2]), times, "stage 2")
    trace = fig.data[0]
    assert list(trace.x) == [1, 2, 3, 4] and trace.fill is None
    assert list(trace.customdata) == times


def _status(num_classes: int, epochs: int = 30) -> dict:
    steps = [{"epoch": e, "step": s, "steps_per_epoch": 2, "loss": 1.0, "ce": 0.9, "spatial": 2.0,
              "temporal": 1.0, "stage_heads": 3.0} for e in range(1, epochs + 1) for s in (1, 2)]
    ep = [{"epoch": e, "train_acc": 0.5, "val_acc": 0.4, "val_top5": 1.0, "diversity_spatial": 0.1}
          for e in range(1, epochs + 1)]
    return {"state": "running", "steps": steps, "epochs": ep, "num_classes": num_classes}


def test_training_plots_whole_epochs_two_rows_and_top5_only_when_it_says_something():
    loss, acc, div = plots.training(_status(num_classes=3))
    layout = loss.layout.to_plotly_json()
    assert not any(v.get("overlaying") for k, v in layout.items() if k.startswith("yaxis"))  # no second y-axis
    assert loss.layout.xaxis2.dtick == 3 and loss.layout.xaxis2.tickformat == "d"  # 30 epochs: every 3rd
    assert acc.layout.xaxis.dtick == 3 and div.layout.xaxis.tick0 == 0
    assert [t.name for t in acc.data] == ["train top-1", "val top-1"]  # top-5 of 3 classes is always 100 %
    _, acc15, _ = plots.training(_status(num_classes=15, epochs=4))
    assert "val top-5" in [t.name for t in acc15.data] and acc15.layout.xaxis.dtick == 1
