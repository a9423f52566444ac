"""Plotly figures for the tabs: presentation only (numbers in, figures out)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D")
OTHER = "#BBBBBB"  # a window whose top class has no line of its own
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), template="plotly_white", height=320)


def empty(message: str, height: int = 240) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14, color="#666"))
    fig.update_layout(**{**_LAYOUT, "height": height}, xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def topk_bar(topk: Sequence[tuple[str, float]]) -> go.Figure:
    names = [n for n, _ in topk][::-1]
    probs = [float(p) for _, p in topk][::-1]
    fig = go.Figure(go.Bar(x=probs, y=names, orientation="h", text=[f"{p:.1%}" for p in probs],
                           textposition="auto", marker_color="#4C78A8"))
    fig.update_layout(**{**_LAYOUT, "height": 80 + 36 * len(names)}, title="Top classes",
                      xaxis=dict(range=[0, 1], tickformat=".0%", title="probability"))
    return fig


def timeline(window_probs: np.ndarray, window_times: Sequence[tuple[float, float]],
             class_names: Sequence[str], top: int = 5) -> go.Figure:
    """Per-window probability of the classes that are top anywhere, over time."""
    wp = np.asarray(window_probs, dtype=float)
    if wp.ndim != 2 or wp.shape[0] == 0:
        return empty("no windows")
    centres = [0.5 * (float(a) + float(b)) for a, b in window_times]
    if wp.shape[0] == 1:
        return empty("The video is one window long: see the bar chart.", height=180)
    # the classes that reach the top-`top` by their best window, in order of mean score
    best = wp.max(axis=0)
    keep = np.argsort(-best)[:top]
    keep = keep[np.argsort(-wp[:, keep].mean(axis=0))]
    fig = go.Figure()
    colour = {int(k): PALETTE[j % len(PALETTE)] for j, k in enumerate(keep)}
    for k in keep:
        fig.add_trace(go.Scatter(x=centres, y=wp[:, k], mode="lines+markers", name=str(class_names[k]),
                                 line_color=colour[int(k)],
                                 hovertemplate="%{x:.1f}s: %{y:.1%}<extra>" + str(class_names[k]) + "</extra>"))
    top_idx = wp.argmax(axis=1)
    fig.add_trace(go.Scatter(
        x=centres, y=[1.04] * len(centres), mode="markers", name="top class of each window (same colours)",
        marker=dict(symbol="square", size=10, color=[colour.get(int(i), OTHER) for i in top_idx]),
        text=[str(class_names[i]) for i in top_idx], hovertemplate="%{x:.1f}s: %{text}<extra>top</extra>",
    ))
    fig.add_annotation(x=0, xref="paper", y=1.04, yref="y", text="top:", showarrow=False, xanchor="right",
                       font=dict(size=11, color="#444"))
    fig.update_layout(**_LAYOUT, title="Where each action happens (per window)",
                      xaxis=dict(title="time (s)"), yaxis=dict(range=[0, 1.08], tickformat=".0%", title="probability"),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def heatmap(matrix: np.ndarray, title: str, x_label: str, y_label: str, labels: Sequence[str] | None = None,
            zmin: float | None = None, zmax: float | None = None, text: bool = False,
            colorscale: str = "Viridis", height: int = 320) -> go.Figure:
    m = np.asarray(matrix, dtype=float)
    kw = {}
    if labels is not None:
        kw = dict(x=list(labels), y=list(labels))
    fig = go.Figure(go.Heatmap(
        z=m, zmin=zmin, zmax=zmax, colorscale=colorscale,
        text=np.round(m, 2) if text else None, texttemplate="%{text}" if text else None, **kw,
    ))
    steps = {} if labels is not None else dict(tickmode="array", tickvals=list(range(m.shape[1])),
                                                 ticktext=[str(i + 1) for i in range(m.shape[1])])
    rows = {} if labels is not None else dict(tickmode="array", tickvals=list(range(m.shape[0])),
                                                ticktext=[str(i + 1) for i in range(m.shape[0])])
    fig.update_layout(**{**_LAYOUT, "height": height}, title=title,
                      xaxis=dict(title=x_label, constrain="domain", **steps),
                      yaxis=dict(title=y_label, autorange="reversed", scaleanchor="x", **rows))
    return fig


def received_curve(values: np.ndarray, frame_times: Sequence[float] | None, title: str) -> go.Figure:
    """Attention per input frame, in the order the model saw the frames (x: 1..N). A looped or
    segment-sampled clip's source times need not increase, so they are hover text, not the axis."""
    v = np.asarray(values, dtype=float)
    x = list(range(1, len(v) + 1))
    times = list(frame_times) if frame_times is not None and len(frame_times) == len(v) else None
    fig = go.Figure(go.Scatter(
        x=x, y=v, mode="lines+markers", line_color="#E45756", line_shape="hv",
        customdata=times, hovertemplate=("frame %{x} (at %{customdata:.2f} s): %{y:.3f}<extra></extra>"
                                         if times else "frame %{x}: %{y:.3f}<extra></extra>")))
    fig.update_layout(**{**_LAYOUT, "height": 220}, title=title,
                      xaxis=dict(title="input frame of the clip", tickmode="linear", tick0=1,
                                 dtick=max(1, int(np.ceil(len(v) / 16)))),
                      yaxis=dict(title="attention received", rangemode="tozero"))
    return fig


def _epoch_axis(last_epoch: float) -> dict:
    """Whole epochs only, at most ~10 ticks."""
    return dict(title="epoch", tickmode="linear", tick0=0, dtick=max(1, int(np.ceil(last_epoch / 10))),
                tickformat="d")


def training(status: dict) -> tuple[go.Figure, go.Figure, go.Figure]:
    """Loss (total and each term), accuracy, diversity: from a RunManager status dict."""
    steps = status.get("steps") or []
    epochs = status.get("epochs") or []
    if not steps:
        msg = "waiting for the first step" if status.get("state") in ("starting", "running") else "no run yet"
        return empty(msg), empty(msg), empty(msg)
    # downsample long runs to ~800 points so polling stays cheap
    stride = max(1, len(steps) // 800)
    pts = steps[::stride]
    x = [(s.get("epoch", 1) - 1) + s.get("step", 0) / max(s.get("steps_per_epoch") or 1, 1) for s in pts]
    loss = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.08,
                         subplot_titles=("cross-entropy terms", "diversity terms (eqs. 6-7)"))
    for key, name, row in (("loss", "total", 1), ("ce", "cross-entropy", 1),
                           ("stage_heads", "stage heads (Fig. 4 probes)", 1),
                           ("spatial", "L_s", 2), ("temporal", "L_t", 2)):
        ys = [s.get(key) for s in pts]
        if any(y is not None for y in ys):
            loss.add_trace(go.Scatter(x=x, y=ys, mode="lines", name=name), row=row, col=1)
    loss.update_layout(**{**_LAYOUT, "height": 420, "margin": dict(l=10, r=10, t=70, b=10)},
                       title="Loss (eq. 9) and its terms",
                       legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1, xanchor="right", font=dict(size=10)))
    loss.update_xaxes(**_epoch_axis(max(x) if x else 1), row=2, col=1)
    loss.update_xaxes(tickmode="linear", tick0=0, dtick=max(1, int(np.ceil((max(x) if x else 1) / 10))), row=1, col=1)

    ex = [e.get("epoch") for e in epochs]
    acc = go.Figure()
    few_classes = (status.get("num_classes") or 99) <= 5  # top-5 of 5 or fewer classes is always 100 %
    for key, name in (("pretext_acc", "direction (self-supervised warm-up)"), ("train_acc", "train top-1"),
                      ("val_acc", "val top-1"), ("val_top5", "val top-5")):
        if key == "val_top5" and few_classes:
            continue
        ys = [e.get(key) for e in epochs]
        if any(y is not None for y in ys):
            acc.add_trace(go.Scatter(x=ex, y=ys, mode="lines+markers", name=name))
    last = max([e for e in ex if e is not None] or [1])
    acc.update_layout(**_LAYOUT, title="Accuracy", xaxis=_epoch_axis(last),
                      yaxis=dict(range=[0, 1], tickformat=".0%"), legend=dict(orientation="h", y=-0.3))
    if not epochs:
        acc = empty("accuracy appears after the first epoch")

    div = go.Figure()
    for key, name in (("diversity_spatial", "spatial"), ("diversity_temporal", "temporal")):
        ys = [e.get(key) for e in epochs]
        if any(y is not None for y in ys):
            div.add_trace(go.Scatter(x=ex, y=ys, mode="lines+markers", name=name))
    div.update_layout(**_LAYOUT, title="Stage similarity (lower = more diverse)",
                      xaxis=_epoch_axis(last), yaxis=dict(title="similarity"),
                      legend=dict(orientation="h", y=-0.3))
    if not epochs or not div.data:
        div = empty("diversity appears after the first validation")
    return loss, acc, div
