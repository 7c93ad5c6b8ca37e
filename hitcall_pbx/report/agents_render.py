"""Rendering the agent productivity report: JSON, CSV and one self-contained HTML page
(inline SVG, Finnish and English labels)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from html import escape
from zoneinfo import ZoneInfo

from ..core.agent_report import AgentDay

FORMATS = ("html", "csv", "json")

CSV_COLUMNS = (
    "day",
    "agent_id",
    "number",
    "name",
    "logged_in_s",
    "ready_s",
    "reserved_s",
    "talk_s",
    "wrap_up_s",
    "paused_s",
    "pause_codes",
    "calls",
    "connects",
    "dispositions",
    "average_handle_s",
    "occupancy",
)

# (key, colour, Finnish, English) for the time bars.
STATE_BARS = (
    ("ready_s", "#2e9d6a", "valmiina", "ready"),
    ("reserved_s", "#9aa5b8", "varattu", "reserved"),
    ("talk_s", "#3b6fd8", "puhelussa", "talk"),
    ("wrap_up_s", "#8a6fd1", "jälkityö", "wrap-up"),
    ("paused_s", "#e0a030", "tauko", "paused"),
)


def render_agents(days: Sequence[AgentDay], fmt: str, *, day: date, zone: ZoneInfo) -> str:
    if fmt == "json":
        data = {"day": day.isoformat(), "time_zone": zone.key, "agents": [d.as_dict() for d in days]}
        return json.dumps(data, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for d in days:
            row = d.as_dict()
            row["pause_codes"] = ";".join(f"{k}={v:g}" for k, v in row.pop("pause_s").items())
            row["dispositions"] = ";".join(f"{k}={v}" for k, v in row["dispositions"].items())
            w.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
        return out.getvalue()
    if fmt == "html":
        return html_page(days, day=day, zone=zone, generated_at=datetime.now(UTC))
    raise ValueError(f"unknown format {fmt!r}")


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _time_bars(days: Sequence[AgentDay]) -> str:
    """One stacked horizontal bar per agent: the logged-in time by state."""
    width, left, row_h = 760, 150, 26
    longest = max((d.logged_in_s for d in days), default=0.0) or 1.0
    height = row_h * len(days) + 30
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, d in enumerate(days):
        y = 6 + i * row_h
        label = escape(f"{d.name} ({d.number or d.agent_id})" if d.name else f"#{d.agent_id}")
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" class="lbl">{label}</text>')
        x = float(left)
        for key, colour, fi, en in STATE_BARS:
            seconds = float(getattr(d, key))
            w = (width - left - 70) * seconds / longest
            if w > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="18" fill="{colour}">'
                    f"<title>{fi} / {en}: {_hms(seconds)}</title></rect>"
                )
                x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}" class="lbl">{_hms(d.logged_in_s)}</text>')
    legend_y = height - 8
    x = float(left)
    for _, colour, fi, en in STATE_BARS:
        parts.append(f'<rect x="{x}" y="{legend_y - 10}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{legend_y}" class="lbl">{fi} / {en}</text>')
        x += 118
    parts.append("</svg>")
    return "".join(parts)


def _call_bars(days: Sequence[AgentDay]) -> str:
    """Calls and connects per agent, side by side."""
    width, height, left, bottom = 760, 220, 40, 40
    top = max(4, -(-max((d.calls for d in days), default=0) // 4) * 4)  # whole calls on every gridline
    slot = (width - left - 10) / max(1, len(days))
    bar = min(28.0, slot / 3)
    plot_h = height - bottom - 12
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        v = top * i / 4
        y = 12 + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="lbl">{v:g}</text>')
    for i, d in enumerate(days):
        x = left + i * slot + slot / 2 - bar
        for j, (value, colour, what) in enumerate(
            ((d.calls, "#9aa5b8", "puhelut / calls"), (d.connects, "#3b6fd8", "yhdistetyt / connects"))
        ):
            h = plot_h * value / top
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{12 + plot_h - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}"'
                f' fill="{colour}"><title>{what}: {value}</title></rect>'
            )
        parts.append(
            f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle"'
            f' class="lbl">{escape(d.number or str(d.agent_id))}</text>'
        )
    for j, (colour, what) in enumerate((("#9aa5b8", "puhelut / calls"), ("#3b6fd8", "yhdistetyt / connects"))):
        x = left + j * 170
        parts.append(f'<rect x="{x}" y="{height - 12}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{height - 2}" class="lbl">{what}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(days: Sequence[AgentDay]) -> str:
    head = (
        "<tr><th>Agentti<br>Agent</th><th>Kirjautunut<br>Logged in</th><th>Valmiina<br>Ready</th>"
        "<th>Varattu<br>Reserved</th><th>Puhelussa<br>Talk</th><th>Jälkityö<br>Wrap-up</th>"
        "<th>Tauot<br>Pauses</th><th>Puhelut<br>Calls</th><th>Yhdistetyt<br>Connects</th>"
        "<th>Keskim. käsittely<br>Avg handle</th><th>Lopputulokset<br>Dispositions</th></tr>"
    )
    rows = []
    for d in days:
        pauses = ", ".join(f"{escape(code or '–')} {_hms(s)}" for code, s in sorted(d.pause_s.items()))
        dispositions = ", ".join(f"{escape(code)} {n}" for code, n in sorted(d.dispositions.items()))
        rows.append(
            f"<tr><td>{escape(d.name or '')} <span class='muted'>{escape(d.number or str(d.agent_id))}</span></td>"
            f"<td>{_hms(d.logged_in_s)}</td><td>{_hms(d.ready_s)}</td><td>{_hms(d.reserved_s)}</td>"
            f"<td>{_hms(d.talk_s)}</td><td>{_hms(d.wrap_up_s)}</td>"
            f"<td>{_hms(d.paused_s)}<div class='muted'>{pauses}</div></td><td>{d.calls}</td><td>{d.connects}</td>"
            f"<td>{_hms(d.average_handle_s)}</td><td>{dispositions or '–'}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2433;background:#f5f6f8}
header{background:#1d2433;color:#fff;padding:18px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c4cad6}main{padding:20px 28px;max-width:1100px}
.card{background:#fff;border-radius:8px;padding:16px 18px;margin-bottom:18px;box-shadow:0 1px 2px #0001}
h2{font-size:16px;margin:0 0 10px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid #e4e7ec;text-align:right;vertical-align:top}
th:first-child,td:first-child,td:last-child,th:last-child{text-align:left}th{color:#6b778c;font-weight:600}
.muted{color:#6b778c;font-size:12px}.lbl{font-size:11px;fill:#4a5468}.grid{stroke:#e4e7ec}
footer{padding:0 28px 24px;color:#6b778c;font-size:12px;max-width:1100px}
"""


def html_page(days: Sequence[AgentDay], *, day: date, zone: ZoneInfo, generated_at: datetime) -> str:
    if days:
        body = (
            f'<div class="card"><h2>Aika tiloittain · Time by state</h2>{_time_bars(days)}</div>'
            f'<div class="card"><h2>Puhelut · Calls</h2>{_call_bars(days)}</div>'
            f'<div class="card"><h2>Agentit · Agents</h2>{_table(days)}</div>'
        )
    else:
        empty = "Ei agenttien työaikaa tänä päivänä · No agent time on this day"
        body = f'<div class="card"><p class="muted">{empty}</p></div>'
    n = len(days)
    count = f"{n} agentti{'a' if n != 1 else ''} / agent{'s' if n != 1 else ''}"
    return f"""<!DOCTYPE html>
<html lang="fi"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>HitCall agent report {day.isoformat()}</title><style>{_CSS}</style></head>
<body><header><h1>HitCall · Agenttien tuottavuus · Agent productivity</h1>
<p>{day.isoformat()} ({escape(zone.key)}) · {count}</p></header>
<main>{body}</main>
<footer>Kirjautunut = valmiina + varattu + puhelussa + jälkityö + tauko. Keskimääräinen käsittelyaika = (puhelu +
jälkityö) / yhdistetyt puhelut. · Logged in = ready + reserved + talk + wrap-up + paused. Average handle time =
(talk + wrap-up) / connects. Calls are the day's call records that name the agent; connects are those that reached
the agent. Generated {generated_at.strftime("%Y-%m-%d %H:%M UTC")}.</footer></body></html>
"""
