"""A self-contained HTML report of an evaluation (core.evaluate): one file, plotly.js inlined,
so it opens offline and can be attached to an issue or a model card.

Figures: the confusion matrix (row-normalised colour, counts as text), per-class accuracy,
the accuracy of each stage's head beside the fused head (the paper's Fig. 4), and the 4x4
cosine similarities between the stages' spatial and temporal attention maps (what the
diversity losses of eq. 7 push down; absent for variants without that attention), and a table
of each stage's attention quality (input dependence, concentration, on-motion lift, verdict).
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

STAGES = ("stage 2", "stage 3", "stage 4", "stage 5")


def confusion_figure(report: dict) -> go.Figure:
    names = report["class_names"]
    counts = np.asarray(report["confusion"] or np.zeros((len(names), len(names))), dtype=float)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)  # rows sum to 1: classes of any size compare
    fig = go.Figure(go.Heatmap(z=rates, x=names, y=names, colorscale="Blues", zmin=0, zmax=1,
                               text=counts.astype(int), texttemplate="%{text}",
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{text} videos (%{z:.0%})<extra></extra>"))
    fig.update_layout(title="Confusion matrix (rows: true class; colour: share of the row)",
                      xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      height=max(400, 22 * len(names) + 200))
    return fig


def per_class_figure(report: dict) -> go.Figure:
    names = [n for n in report["class_names"] if n in report["per_class"]]
    fig = go.Figure(go.Bar(x=names, y=[report["per_class"][n] for n in names]))
    fig.add_hline(y=report["mean_class_accuracy"], line_dash="dash",
                  annotation_text=f"mean class accuracy {report['mean_class_accuracy']:.3f}")
    fig.update_layout(title="Accuracy per class", yaxis_range=[0, 1.05], yaxis_title="top-1")
    return fig


def stage_figure(report: dict) -> go.Figure:
    heads = report["stage_heads"]
    fig = go.Figure(go.Bar(x=list(heads), y=list(heads.values()),
                           marker_color=["#9ab" if k != "fused" else "#2a6" for k in heads]))
    fig.update_layout(title="Top-1 of each stage's own head and of the fused head (paper Fig. 4)",
                      yaxis_range=[0, 1.05], yaxis_title="top-1")
    return fig


def similarity_figure(report: dict, kind: str) -> go.Figure | None:
    matrix = report.get(f"similarity_{kind}")
    if not matrix:
        return None
    fig = go.Figure(go.Heatmap(z=matrix, x=list(STAGES), y=list(STAGES), zmin=-1, zmax=1, colorscale="RdBu_r",
                               text=np.round(matrix, 3), texttemplate="%{text}"))
    fig.update_layout(title=f"{kind.capitalize()} attention: cosine similarity between stages "
                            f"<br>(mean off-diagonal {report[f'diversity_{kind}']:.3f})",
                      yaxis_autorange="reversed", height=460, width=620)
    return fig


def report_figures(report: dict) -> list[go.Figure]:
    figures = [confusion_figure(report), per_class_figure(report), stage_figure(report)]
    figures += [f for f in (similarity_figure(report, "spatial"), similarity_figure(report, "temporal")) if f]
    return figures


def quality_table_html(quality: dict) -> str:
    """The attention-quality figures (core.attention_quality) as an HTML table; degenerate rows in red."""
    if not quality:
        return ""
    rows = []
    for kind, stages in quality.items():
        for stage, row in stages.items():
            cells = ["-" if row.get(k) is None else f"{row[k]:.3f}"
                     for k in ("input_dependence", "concentration", "motion_lift")]
            verdict = row.get("degenerate") or "ok"
            style = " style='color:#b00'" if row.get("degenerate") else ""
            rows.append(f"<tr{style}><td>{kind}</td><td>{stage}</td>" + "".join(f"<td>{c}</td>" for c in cells)
                        + f"<td>{html.escape(verdict)}</td></tr>")
    return ("<h2>Attention quality</h2><p>Input dependence: 0 = the same map for every video. Concentration: "
            "share of cells effectively attended (1/cells = one-hot, 1 = uniform). On-motion lift: &gt; 1 = "
            "attention on what moves.</p><table border='1' cellpadding='4' style='border-collapse:collapse'>"
            "<tr><th>attention</th><th>stage</th><th>input dependence</th><th>concentration</th>"
            "<th>on-motion lift</th><th>verdict</th></tr>" + "".join(rows) + "</table>")


def write_html_report(report: dict, path) -> Path:
    """Write the report's figures and headline numbers to one HTML file; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    divs = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(report_figures(report))]
    skipped = "".join(f"<li>{html.escape(s['path'])}: {html.escape(s['error'])}</li>" for s in report["skipped"])
    head = (f"<h1>ST-MANet evaluation</h1><p>checkpoint <code>{html.escape(str(report['checkpoint']))}</code>; "
            f"{report['videos']} videos evaluated, {len(report['skipped'])} unreadable</p>"
            f"<p><b>top-1 {report['top1']:.4f}</b> &middot; top-5 {report['top5']:.4f} &middot; "
            f"mean class accuracy {report['mean_class_accuracy']:.4f}</p>"
            + (f"<details><summary>unreadable videos</summary><ul>{skipped}</ul></details>" if skipped else "")
            + quality_table_html(report.get("attention_quality") or {}))
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>ST-MANet evaluation</title></head>"
            f"<body style='font-family:sans-serif'>{head}{''.join(divs)}</body></html>")
    path.write_text(page, encoding="utf-8")
    return path
