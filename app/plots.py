"""Plotly figures for the tabs: presentation only (numbers in, figures out)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

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
    for k in keep:
        fig.add_trace(go.Scatter(x=centres, y=wp[:, k], mode="lines+markers", name=str(class_names[k]),
                                 hovertemplate="%{x:.1f}s: %{y:.1%}<extra>" + str(class_names[k]) + "</extra>"))
    top_idx = wp.argmax(axis=1)
    fig.add_trace(go.Scatter(
        x=centres, y=[1.04] * len(centres), mode="markers", showlegend=False,
        marker=dict(symbol="square", size=10, color=[int(i) for i in top_idx], colorscale="Turbo"),
        text=[str(class_names[i]) for i in top_idx], hovertemplate="%{x:.1f}s: %{text}<extra>top</extra>",
    ))
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
    fig.update_layout(**{**_LAYOUT, "height": height}, title=title,
                      xaxis=dict(title=x_label, constrain="domain"),
                      yaxis=dict(title=y_label, autorange="reversed", scaleanchor="x"))
    return fig


def received_curve(values: np.ndarray, frame_times: Sequence[float] | None, title: str) -> go.Figure:
    v = np.asarray(values, dtype=float)
    x = list(frame_times) if frame_times is not None and len(frame_times) == len(v) else list(range(len(v)))
    fig = go.Figure(go.Scatter(x=x, y=v, mode="lines+markers", fill="tozeroy", line_color="#E45756"))
    fig.update_layout(**{**_LAYOUT, "height": 220}, title=title,
                      xaxis=dict(title="input frame" if frame_times is None else "time (s)"),
                      yaxis=dict(title="attention received", rangemode="tozero"))
    return fig


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
    loss = make_subplots(specs=[[{"secondary_y": True}]])
    for key, name, secondary in (("loss", "total", False), ("ce", "cross-entropy", False),
                                 ("spatial", "spatial diversity L_s", True),
                                 ("temporal", "temporal diversity L_t", True),
                                 ("stage_heads", "stage heads (Fig. 4 probes)", False)):
        ys = [s.get(key) for s in pts]
        if any(y is not None for y in ys):
            loss.add_trace(go.Scatter(x=x, y=ys, mode="lines", name=name), secondary_y=secondary)
    loss.update_layout(**_LAYOUT, title="Loss (eq. 9) and its terms", legend=dict(orientation="h", y=-0.3))
    loss.update_xaxes(title_text="epoch")
    loss.update_yaxes(title_text="loss", secondary_y=False)
    loss.update_yaxes(title_text="diversity terms", secondary_y=True)

    ex = [e.get("epoch") for e in epochs]
    acc = go.Figure()
    for key, name in (("train_acc", "train top-1"), ("val_acc", "val top-1"), ("val_top5", "val top-5")):
        ys = [e.get(key) for e in epochs]
        if any(y is not None for y in ys):
            acc.add_trace(go.Scatter(x=ex, y=ys, mode="lines+markers", name=name))
    acc.update_layout(**_LAYOUT, title="Accuracy", xaxis=dict(title="epoch", dtick=1),
                      yaxis=dict(range=[0, 1], tickformat=".0%"), legend=dict(orientation="h", y=-0.3))
    if not epochs:
        acc = empty("accuracy appears after the first epoch")

    div = go.Figure()
    for key, name in (("diversity_spatial", "spatial"), ("diversity_temporal", "temporal")):
        ys = [e.get(key) for e in epochs]
        if any(y is not None for y in ys):
            div.add_trace(go.Scatter(x=ex, y=ys, mode="lines+markers", name=name))
    div.update_layout(**_LAYOUT, title="Stage similarity (lower = more diverse)",
                      xaxis=dict(title="epoch", dtick=1), yaxis=dict(title="similarity"),
                      legend=dict(orientation="h", y=-0.3))
    if not epochs or not div.data:
        div = empty("diversity appears after the first validation")
    return loss, acc, div
