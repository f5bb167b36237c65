"""A drift report as one self-contained HTML page: inline CSS, inline SVG histograms, no script, no link.

It opens offline from S3, an e-mail attachment or a laptop: the dataset verdict, the drift table (test,
score, threshold, p-value, missing shares, the reason in words) and per feature the baseline's histogram
against the window's on shared bins.
"""

from __future__ import annotations

from html import escape

from mlcycle.monitoring.drift import ColumnDrift, DriftReport, Histogram

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.verdict{display:inline-block;padding:4px 10px;border-radius:4px;font-weight:600}
.drift{background:#fde2e1;color:#9b1c1c}.ok{background:#def7ec;color:#03543f}.none{background:#eceff3;color:#4b5563}
table{border-collapse:collapse;width:100%;margin-top:8px}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.features{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:16px}
.card{border:1px solid #e5e7eb;border-radius:6px;padding:10px}
.card h3{font-size:14px;margin:0 0 4px}.muted{color:#6b7280;font-size:12px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;vertical-align:middle}
"""
_REFERENCE_COLOUR = "#93a3b8"
_CURRENT_COLOUR = "#e4572e"
_WIDTH, _HEIGHT, _BOTTOM = 400, 150, 28


def render(report: DriftReport, *, title: str = "Data drift report") -> str:
    """The whole page as a string."""
    columns = [*report.columns, *([report.prediction] if report.prediction else [])]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _summary(report),
        "<h2>Drift by column</h2>",
        _table(columns),
        "<h2>Distributions: reference against current</h2>",
        '<p class="legend muted">',
        f'<span style="background:{_REFERENCE_COLOUR}"></span>reference',
        f'<span style="background:{_CURRENT_COLOUR}"></span>current</p>',
        '<div class="features">',
        *(_card(column) for column in columns),
        "</div></body></html>",
    ]
    return "\n".join(parts)


def _summary(report: DriftReport) -> str:
    dataset = report.dataset
    if dataset.status != "ok" or dataset.drifted is None:
        verdict = '<span class="verdict none">insufficient data: no verdict</span>'
    elif dataset.drifted:
        verdict = '<span class="verdict drift">dataset drift</span>'
    else:
        verdict = '<span class="verdict ok">no dataset drift</span>'
    share = "-" if dataset.share is None else f"{dataset.share:.0%}"
    drifted = ", ".join(escape(name) for name in dataset.drifted_columns) or "none"
    return (
        f"<p>{verdict}</p><p>Drifted columns: <b>{share}</b> of {dataset.columns_with_verdict} "
        f"with a verdict (threshold {dataset.threshold:.0%}): {drifted}.<br>"
        f'<span class="muted">reference {dataset.reference_rows:,} rows, '
        f"current {dataset.current_rows:,} rows</span></p>"
    )


def _table(columns: list[ColumnDrift]) -> str:
    head = (
        "<tr><th>column</th><th>type</th><th>test</th><th>score</th><th>threshold</th><th>p-value</th>"
        "<th>drift</th><th>missing ref / cur</th><th>why</th></tr>"
    )
    rows = [_row(column) for column in columns]
    return f"<table>{head}{''.join(rows)}</table>"


def _row(column: ColumnDrift) -> str:
    verdict = {True: '<span class="verdict drift">drift</span>', False: "no"}.get(column.drifted, "n/a")  # type: ignore[arg-type]
    missing = f"{column.reference_missing_share:.1%} / {column.current_missing_share:.1%}"
    cells = [
        escape(column.column),
        column.kind,
        column.test,
        _number(column.score),
        _number(column.threshold),
        _number(column.p_value),
        verdict,
        missing,
        escape(column.reason),
    ]
    classes = ["", "", "", "num", "num", "num", "", "num", ""]
    return (
        "<tr>" + "".join(f'<td class="{c}">{v}</td>' for c, v in zip(classes, cells, strict=True)) + "</tr>"
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _card(column: ColumnDrift) -> str:
    chart = _svg(column.histogram) if column.histogram else '<p class="muted">no values to plot</p>'
    unseen = ""
    if column.unseen_categories:
        names = ", ".join(escape(name) for name in column.unseen_categories[:8])
        unseen = f'<p class="muted">unseen in the reference ({column.unseen_share:.1%}): {names}</p>'
    return (
        f'<div class="card"><h3>{escape(column.column)}</h3>'
        f'<p class="muted">{column.test}: {_number(column.score)} - {escape(column.reason)}</p>'
        f"{chart}{unseen}</div>"
    )


def _svg(histogram: Histogram) -> str:
    """Paired bars per bin: the reference's share, then the current's, on one scale."""
    bins = len(histogram.reference)
    top = max([*histogram.reference, *histogram.current, 1e-12])
    slot = _WIDTH / max(bins, 1)
    bar = max(slot / 2 - 1, 0.5)
    plot = _HEIGHT - _BOTTOM
    shapes = []
    for i, (ref, cur) in enumerate(zip(histogram.reference, histogram.current, strict=True)):
        for offset, share, colour in ((0.0, ref, _REFERENCE_COLOUR), (bar, cur, _CURRENT_COLOUR)):
            height = plot * share / top
            x = i * slot + offset + 0.5
            shapes.append(
                f'<rect x="{x:.1f}" y="{plot - height:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{colour}"><title>{share:.1%}</title></rect>'
            )
    shapes.append(f'<line x1="0" y1="{plot}" x2="{_WIDTH}" y2="{plot}" stroke="#9ca3af"/>')
    shapes.extend(_axis_labels(histogram, slot, plot))
    return (
        f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" width="100%" '
        f'role="img" font-size="10" fill="#4b5563">{"".join(shapes)}</svg>'
    )


def _axis_labels(histogram: Histogram, slot: float, plot: float) -> list[str]:
    y = plot + 12
    if histogram.labels is not None:
        step = max(1, len(histogram.labels) // 8)  # at most ~8 labels fit under 400 px
        return [
            f'<text x="{i * slot + slot / 2:.1f}" y="{y}" text-anchor="middle">{escape(label[:10])}</text>'
            for i, label in enumerate(histogram.labels)
            if i % step == 0
        ]
    edges = histogram.edges or []
    if not edges:
        return []
    middle = edges[len(edges) // 2]
    return [
        f'<text x="0" y="{y}">{edges[0]:.4g}</text>',
        f'<text x="{_WIDTH / 2}" y="{y}" text-anchor="middle">{middle:.4g}</text>',
        f'<text x="{_WIDTH}" y="{y}" text-anchor="end">{edges[-1]:.4g}</text>',
    ]
