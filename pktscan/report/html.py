"""The report as one self-contained HTML page: inline CSS and SVG, no scripts.

Each number on the page carries a ``data-metric`` attribute and each chart
a ``data-chart`` attribute, so tests and scripts can read them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from pktscan.certs import Severity
from pktscan.report.data import EXPIRING_DAYS, ReportData, issuer_label
from pktscan.report.svg import bar_chart, column_chart

__all__ = ["SEVERITY_COLORS", "render"]

SEVERITY_COLORS = {
    Severity.CRITICAL.value: "#8e1b2b",
    Severity.HIGH.value: "#d64545",
    Severity.MEDIUM.value: "#e8912d",
    Severity.LOW.value: "#d9c646",
    Severity.INFO.value: "#7b8794",
}

# Protocol versions from the weakest; colors run from red to green.
_VERSION_COLORS = {
    "SSLv2": "#8e1b2b",
    "SSLv3": "#d64545",
    "TLSv1.0": "#e8912d",
    "TLSv1.1": "#d9c646",
    "TLSv1.2": "#3f9142",
    "TLSv1.3": "#1f7a4d",
}

_CHANGE_COLORS = {"changed": "#3b6fb6", "added": "#3f9142", "removed": "#d64545"}

_EXPIRED_COLOR = "#d64545"
_SOON_COLOR = "#e8912d"
_LATER_COLOR = "#3b6fb6"

_STYLE = """
body { margin: 0; background: #f5f7fa; color: #1f2933;
       font: 15px/1.45 system-ui, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 12px; }
.meta { color: #52606d; margin: 0 0 20px; }
.tiles { display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px;
         margin-bottom: 20px; }
.tile { background: #fff; border-radius: 8px; padding: 14px 16px;
        box-shadow: 0 1px 2px rgba(0,0,0,.08); border-top: 4px solid #3b6fb6; }
.tile .value { display: block; font-size: 32px; font-weight: 700; }
.tile .label { color: #52606d; font-size: 13px; }
.tile.bad { border-top-color: #d64545; }
.tile.warn { border-top-color: #e8912d; }
.tile.good { border-top-color: #3f9142; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 20px;
        margin-bottom: 20px; }
.grid .card { margin-bottom: 0; }
.card { background: #fff; border-radius: 8px; padding: 18px 20px;
        box-shadow: 0 1px 2px rgba(0,0,0,.08); margin-bottom: 20px;
        overflow: hidden; }
.card svg { max-width: 100%; height: auto; display: block; }
.wide { grid-column: 1 / -1; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e4e7eb;
         vertical-align: top; }
th { color: #52606d; font-weight: 600; }
td.mono { font-family: ui-monospace, monospace; white-space: nowrap; }
.sev { display: inline-block; padding: 1px 8px; border-radius: 10px;
       color: #fff; font-size: 12px; font-weight: 600; }
.none { color: #52606d; }
"""


def render(data: ReportData) -> str:
    """Render the report page for `data` as a complete HTML document."""
    latest = data.latest_scan
    scan_text = "no scans yet"
    if latest is not None:
        scan_text = f"latest scan {latest.id}, started {latest.started}"
    sections = [
        _tiles(data),
        '<div class="grid">',
        _card(
            "Expiry timeline (distinct leaf certificates by month of notAfter)",
            column_chart(data.timeline, colors=_timeline_colors(data), name="expiry"),
            wide=True,
        ),
        _card(
            "Findings by severity",
            bar_chart(
                data.severities,
                colors=[SEVERITY_COLORS[name] for name, _ in data.severities],
                name="severity",
            ),
        ),
        _card(
            "Changes since the previous scan",
            bar_chart(
                _change_counts(data),
                colors=list(_CHANGE_COLORS.values()),
                name="changes",
            ),
        ),
        _card(
            "Protocol versions (endpoints)",
            bar_chart(
                data.versions,
                colors=[
                    _VERSION_COLORS.get(name, "#7b8794") for name, _ in data.versions
                ],
                name="versions",
            ),
        ),
        _card(
            "Key types (distinct leaves)",
            bar_chart(data.key_types, name="keys"),
        ),
        _card(
            "Issuers (distinct leaves)",
            bar_chart(
                data.issuers,
                colors=["#5a4fcf"] * len(data.issuers),
                width=1120,
                label_width=380,
                name="issuers",
            ),
            wide=True,
        ),
        "</div>",
        _card("Changes since the previous scan", _changes_table(data)),
        _card("Findings by kind", _kinds_table(data)),
        _card("Most severe findings", _findings_table(data)),
        _card("Certificates that expire first", _soonest_table(data)),
    ]
    body = "\n".join(sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pktscan certificate report</title>
<style>{_STYLE}</style>
</head>
<body>
<main>
<h1>Certificate inventory report</h1>
<p class="meta">{escape(data.source)} &middot; {data.scans} scans &middot;
{escape(scan_text)} &middot; generated {escape(data.generated)}</p>
{body}
</main>
</body>
</html>
"""


def _tile(metric: str, value: int, label: str, tone: str = "") -> str:
    return (
        f'<div class="tile {tone}" data-metric="{metric}">'
        f'<span class="value">{value}</span>'
        f'<span class="label">{escape(label)}</span></div>'
    )


def _tiles(data: ReportData) -> str:
    changed = len(data.changes)
    tiles = [
        _tile("endpoints", data.endpoints, "endpoints with a certificate"),
        _tile("certificates", data.certificates, "distinct leaf certificates"),
        _tile(
            "expired",
            data.expired,
            "expired leaves",
            "bad" if data.expired else "good",
        ),
        _tile(
            "expiring",
            data.expiring,
            f"leaves expiring within {EXPIRING_DAYS} days",
            "warn" if data.expiring else "good",
        ),
        _tile(
            "urgent",
            data.urgent,
            "critical and high findings",
            "bad" if data.urgent else "good",
        ),
        _tile("changes", changed, "changes since the previous scan"),
    ]
    return '<div class="tiles">' + "".join(tiles) + "</div>"


def _card(title: str, content: str, *, wide: bool = False) -> str:
    extra = " wide" if wide else ""
    return f'<section class="card{extra}"><h2>{escape(title)}</h2>{content}</section>'


def _timeline_colors(data: ReportData) -> list[str]:
    colors = []
    for index, (bucket, _) in enumerate(data.timeline):
        if bucket == "expired":
            colors.append(_EXPIRED_COLOR)
        elif index == 1:
            colors.append(_SOON_COLOR)
        else:
            colors.append(_LATER_COLOR)
    return colors


def _change_counts(data: ReportData) -> list[tuple[str, int]]:
    return [
        (kind, sum(1 for change in data.changes if change.change == kind))
        for kind in _CHANGE_COLORS
    ]


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str, name: str
) -> str:
    if not rows:
        return f'<p class="none" data-table="{name}">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return (
        f'<table data-table="{name}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _cell(text: str | int | None, *, mono: bool = False) -> str:
    shown = "" if text is None else str(text)
    css = ' class="mono"' if mono else ""
    return f"<td{css}>{escape(shown)}</td>"


def _severity_cell(severity: str) -> str:
    color = SEVERITY_COLORS.get(severity, "#7b8794")
    return (
        f'<td><span class="sev" style="background:{color}">'
        f"{escape(severity)}</span></td>"
    )


def _changes_table(data: ReportData) -> str:
    if data.previous_scan is None:
        return '<p class="none" data-table="changes">only one scan recorded</p>'
    rows = [
        [
            _cell(f"{change.address}:{change.port}", mono=True),
            _cell(change.change),
            _cell(change.before[:16] if change.before else None, mono=True),
            _cell(change.after[:16] if change.after else None, mono=True),
        ]
        for change in data.changes
    ]
    assert data.latest_scan is not None
    empty = (
        f"no leaf changed from scan {data.previous_scan.id}"
        f" to scan {data.latest_scan.id}"
    )
    headers = ["endpoint", "change", "before (SHA-256)", "after (SHA-256)"]
    return _table(headers, rows, empty, "changes")


def _kinds_table(data: ReportData) -> str:
    rows = [
        [_cell(kind), _severity_cell(severity), _cell(count)]
        for kind, severity, count in data.kinds
    ]
    return _table(["kind", "severity", "count"], rows, "no findings", "kinds")


def _findings_table(data: ReportData) -> str:
    rows = [
        [
            _severity_cell(row.severity),
            _cell(f"{row.address}:{row.port}", mono=True),
            _cell(row.kind),
            _cell(row.message),
        ]
        for row in data.findings
    ]
    headers = ["severity", "endpoint", "kind", "message"]
    return _table(headers, rows, "no findings", "findings")


def _soonest_table(data: ReportData) -> str:
    rows = [
        [
            _cell((leaf.not_after or "")[:10], mono=True),
            _cell(f"{leaf.address}:{leaf.port}", mono=True),
            _cell(leaf.subject),
            _cell(issuer_label(leaf.issuer)),
        ]
        for leaf in data.soonest
    ]
    headers = ["not after", "endpoint", "subject", "issuer"]
    return _table(headers, rows, "no certificates", "soonest")
