"""Rendering daily reports: JSON, CSV and one self-contained HTML page with inline SVG."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime, time
from html import escape
from zoneinfo import ZoneInfo

from .compute import CSV_COLUMNS, CampaignDay, InboundDay, csv_row, inbound_csv_row

FORMATS = ("html", "csv", "json")

OUTCOME_COLOURS = {
    "answered_human": "#2e9d6a",
    "answered_machine": "#8a6fd1",
    "busy": "#e0a030",
    "no_answer": "#9aa5b8",
    "congestion": "#c96f3b",
    "failed": "#6b7280",
    "abandoned": "#d64545",
    "cancelled": "#c4cad6",
    "no_agent": "#b0527a",
    "in_progress": "#4b8fe2",
}
BLOCK_LABELS = {
    "outside_window": "outside the calling window",
    "dnc_global": "do-not-call list (all campaigns)",
    "dnc_campaign": "do-not-call list (this campaign)",
    "marketing_prohibited": "objected to direct marketing",
    "suppressed": "erased person (suppressed number)",
    "processing_restricted": "processing restricted",
    "abandoned_72h": "abandoned in the last 72 h",
    "max_attempts": "attempts used up",
    "retry_not_reached": "retry time not reached",
}
GOOD, BAD, MUTED, ACCENT = "#2e9d6a", "#d64545", "#6b778c", "#3b6fd8"

# The HTML page's texts in Finnish, keyed by the English ones (English is the default).
FINNISH: dict[str, str] = {
    "outside the calling window": "soittoajan ulkopuolella",
    "do-not-call list (all campaigns)": "kieltolista (kaikki kampanjat)",
    "do-not-call list (this campaign)": "kieltolista (tämä kampanja)",
    "objected to direct marketing": "kieltänyt suoramarkkinoinnin",
    "erased person (suppressed number)": "poistettu henkilö (estetty numero)",
    "processing restricted": "käsittely rajoitettu",
    "abandoned in the last 72 h": "hylätty viimeisten 72 tunnin aikana",
    "attempts used up": "yritykset käytetty",
    "retry time not reached": "uusintayrityksen aika ei ole tullut",
    "No calls.": "Ei puheluita.",
    "answered human": "vastattu (ihminen)",
    "answered machine": "vastaajakone",
    "busy": "varattu",
    "no answer": "ei vastausta",
    "congestion": "ruuhka",
    "failed": "epäonnistui",
    "abandoned": "hylätty",
    "cancelled": "peruttu",
    "no agent": "ei vapaata agenttia",
    "in progress": "kesken",
    "No return calls.": "Ei paluupuheluita.",
    "Return calls": "Paluupuhelut",
    "{m} min with agents": "{m} min agenttien kanssa",
    "Put through to an agent": "Yhdistetty agentille",
    "median wait {w}": "odotuksen mediaani {w}",
    "Hung up waiting": "Luopui odottaessaan",
    "No agent free": "Ei vapaata agenttia",
    "heard the message": "kuuli tiedotteen",
    "Served by the menu": "Palveltu valikossa",
    "opted out, or listened and hung up": "kielsi soitot tai kuunteli ja sulki",
    "Untracked": "Seuraamatta",
    "ended during a service restart": "päättyi palvelun uudelleenkäynnistyksessä",
    "Within abandon cap": "Hylkäysraja alittuu",
    "Abandon cap exceeded": "Hylkäysraja ylittyy",
    "Calls": "Puhelut",
    "{n} answered": "{n} vastattu",
    "Connected to agent": "Yhdistetty agentille",
    " of calls": " puheluista",
    "Abandoned": "Hylätyt",
    "heard the information message": "kuulivat tiedotteen",
    "Abandon rate today": "Hylkäysaste tänään",
    "cap {c} %": "raja {c} %",
    "Abandon rate 30 days": "Hylkäysaste 30 päivää",
    "Answer → agent within 2 s": "Vastaus → agentti 2 s:ssa",
    "Callbacks": "Takaisinsoitot",
    "{n} scheduled": "{n} sovittu",
    "{d} done · {m} missed · {c} cancelled": "{d} tehty · {m} ohitettu · {c} peruttu",
    "Callbacks overdue": "Myöhässä olevat takaisinsoitot",
    "still scheduled past their time": "yhä sovittuna, aika mennyt",
    "Monitoring": "Kuuntelu",
    "{n} sessions": "{n} kertaa",
    "{m} min · {s} supervisors": "{m} min · {s} esimiestä",
    " · {n} ended on a fault": " · {n} päättyi vikaan",
    "none": "ei yhtään",
    "Abandon rate by hour": "Hylkäysaste tunneittain",
    "Red bars are hours over the cap (dashed line).": "Punaiset palkit ovat rajan (katkoviiva) ylittäviä tunteja.",
    "Agent occupancy by hour": "Agenttien käyttöaste tunneittain",
    "Time on calls and wrap-up / time staffed.": "Aika puheluissa ja jälkitöissä / työaika.",
    "Ring time until answer or give-up": "Soittoaika vastaukseen tai luopumiseen",
    "Calls per bin; median {m}.": "Puheluita luokittain; mediaani {m}.",
    "Calls by hour": "Puhelut tunneittain",
    "Attempts placed ({zone} hours).": "Soitetut yritykset ({zone}, tunnit).",
    "Outcomes": "Lopputulokset",
    "Return calls (inbound)": "Paluupuhelut (saapuvat)",
    "Callers on the return-call line matched to this campaign. Not part of the abandon rate.": (
        "Paluupuhelulinjalle soittaneet, jotka kohdistettiin tähän kampanjaan. Eivät kuulu hylkäysasteeseen."
    ),
    "Dialling blocked before the call": "Ennen soittoa estetyt",
    "Outside calling window": "Soittoajan ulkopuolella",
    "Do-not-call / prohibited": "Kieltolista / kielletty",
    "Recordings": "Tallenteet",
    "Stored today": "Tallennettu tänään",
    "Purged today": "Poistettu tänään",
    "On complaint hold": "Valituksen vuoksi säilytetty",
    "No campaign activity on this day.": "Kampanjoilla ei ollut toimintaa tänä päivänä.",
    "Return calls of no campaign": "Paluupuhelut ilman kampanjaa",
    "Callers on the return-call line whose number and dialled line matched no campaign.": (
        "Paluupuhelulinjalle soittaneet, joiden numero ja valittu linja eivät vastanneet mitään kampanjaa."
    ),
    "HitCall compliance report": "HitCall-vaatimustenmukaisuusraportti",
    "HitCall · Daily compliance report": "HitCall · Päivän vaatimustenmukaisuusraportti",
    "{n} campaigns": "{n} kampanjaa",
    "1 campaign": "1 kampanja",
    "UTC day; times in {zone}": "UTC-vuorokausi; kellonajat {zone}",
    "Abandon rate = abandoned / (abandoned + connected to an agent) over outbound calls; a call is abandoned when a"
    " person answered and no agent took it within 2 seconds. Return calls (inbound) are counted apart. The 30-day rate"
    " covers the 30 days ending with this day. Generated {at}.": (
        "Hylkäysaste = hylätyt / (hylätyt + agentille yhdistetyt) lähtevistä puheluista; puhelu on hylätty, kun"
        " ihminen vastasi eikä agentti ottanut sitä 2 sekunnissa. Paluupuhelut (saapuvat) lasketaan erikseen."
        " 30 päivän aste kattaa tähän päivään päättyvät 30 päivää. Luotu {at}."
    ),
}
FI_WEEKDAYS = ("maanantai", "tiistai", "keskiviikko", "torstai", "perjantai", "lauantai", "sunnuntai")


def _translator(locale: str) -> Callable[..., str]:
    """`tr("English text", name=value)`: the text in `locale` (fi or en) with {name} filled in."""
    texts = FINNISH if locale == "fi" else {}

    def tr(text: str, **values: object) -> str:
        found = texts.get(text, text)
        return found.format(**values) if values else found

    return tr


def render(
    reports: list[CampaignDay],
    fmt: str,
    *,
    day: date,
    generated_at: datetime | None = None,
    inbound_without_campaign: InboundDay | None = None,
    locale: str = "en",
    zone: ZoneInfo | None = None,
) -> str:
    """The report in `fmt`; `inbound_without_campaign`: the day's inbound calls that matched
    no campaign (None: not part of this report, e.g. a report of one campaign). The HTML page
    is in `locale` (en, fi) with its clock times (hours, when generated) in `zone` (UTC)."""
    unmatched = inbound_without_campaign
    if fmt == "json":
        data = {
            "day": day.isoformat(),
            "campaigns": [r.as_dict() for r in reports],
            "inbound_without_campaign": asdict(unmatched) if unmatched is not None else None,
        }
        return json.dumps(data, indent=2, default=str) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in reports:
            w.writerow(csv_row(r))
        if unmatched is not None and unmatched.calls:
            w.writerow(inbound_csv_row(day, unmatched))
        return out.getvalue()
    if fmt == "html":
        return html_page(
            reports,
            day=day,
            generated_at=generated_at or datetime.now(UTC),
            inbound_without_campaign=unmatched,
            locale=locale,
            zone=zone,
        )
    raise ValueError(f"unknown format {fmt!r}")


# ------------------------------------------------------------------- helpers ---
def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x * 100:.{digits}f} %"


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f} ms"


def _nice_max(v: float, *, steps: int = 4, integer: bool = False) -> float:
    """The smallest round axis maximum >= v whose `steps` gridlines fall on round values."""
    if v <= 0:
        return float(steps) if integer else 1.0
    raw = v / steps
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 1.5, 2, 2.5, 3, 5, 10) if m * mag >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, math.ceil(step))
    return step * steps


def _bar_chart(
    values: Sequence[float | None],
    labels: Sequence[str],
    *,
    ymax: float,
    fmt: Callable[[float], str],
    colour: Callable[[float], str],
    line: float | None = None,
    line_label: str = "",
    width: int = 520,
    height: int = 210,
    label_every: int = 1,
) -> str:
    """A bar chart as inline SVG; None values are drawn as gaps."""
    left, right, top, bottom = 44, 10, 14, 26
    pw, ph = width - left - right, height - top - bottom
    n = max(1, len(values))
    slot = pw / n
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        tick = ymax * i / 4
        y = top + ph - ph * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9f0"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="ax">{escape(fmt(tick))}</text>')
    for i, v in enumerate(values):
        x = left + i * slot + slot * 0.14
        if i % label_every == 0:
            parts.append(
                f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - 8}" text-anchor="middle" '
                f'class="ax">{escape(labels[i])}</text>'
            )
        if v is None:
            continue
        h = ph * min(v, ymax) / ymax
        parts.append(
            f'<rect x="{x:.1f}" y="{top + ph - h:.1f}" width="{slot * 0.72:.1f}" height="{max(h, 0.8):.1f}" '
            f'rx="2" fill="{colour(v)}"><title>{escape(labels[i])}: {escape(fmt(v))}</title></rect>'
        )
    if line is not None:
        y = top + ph - ph * min(line, ymax) / ymax
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{BAD}" '
            f'stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
        parts.append(
            f'<text x="{width - right}" y="{y - 5:.1f}" text-anchor="end" class="cap">{escape(line_label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _meter(value: float | None, cap: float) -> str:
    """A horizontal meter of a rate against its cap (the cap sits at 2/3 of the width)."""
    full = cap * 1.5 or 0.01
    v = 0.0 if value is None else value
    w = min(v / full, 1.0) * 100
    colour = GOOD if v <= cap else BAD
    return (
        f'<div class="meter"><div class="fill" style="width:{w:.1f}%;background:{colour}"></div>'
        f'<div class="capmark" title="cap {cap * 100:.1f} %"></div></div>'
    )


def _stacked(outcomes: dict[str, int], tr: Callable[..., str]) -> str:
    total = sum(outcomes.values())
    if not total:
        return f'<p class="muted">{tr("No calls.")}</p>'
    segs, legend = [], []
    for name, n in outcomes.items():
        colour = OUTCOME_COLOURS.get(name, MUTED)
        label = escape(tr(name.replace("_", " ")))
        segs.append(f'<div style="flex:{n};background:{colour}" title="{label}: {n}"></div>')
        legend.append(
            f'<span><i style="background:{colour}"></i>{label} '
            f'<b>{n}</b> <span class="muted">({n / total * 100:.0f} %)</span></span>'
        )
    return f'<div class="stack">{"".join(segs)}</div><div class="legend">{"".join(legend)}</div>'


def _tile(label: str, value: str, sub: str = "", tone: str = "") -> str:
    return (
        f'<div class="tile {tone}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{value}</div><div class="sub">{sub}</div></div>'
    )


def _inbound_tiles(i: InboundDay, tr: Callable[..., str]) -> str:
    if not i.calls:
        return f'<p class="muted">{tr("No return calls.")}</p>'
    wait = "–" if i.wait_to_agent_p50_s is None else f"{i.wait_to_agent_p50_s:.1f} s"
    gave_up = "–" if i.abandoned_wait_p50_s is None else f"{i.abandoned_wait_p50_s:.1f} s"
    return (
        '<div class="tiles small">'
        + _tile(tr("Return calls"), str(i.calls), tr("{m} min with agents", m=f"{i.talk_s / 60:.1f}"))
        + _tile(
            tr("Put through to an agent"),
            str(i.connected),
            f"{_pct(i.connected_share, 0)} · " + tr("median wait {w}", w=wait),
        )
        + _tile(tr("Hung up waiting"), str(i.abandoned), tr("median wait {w}", w=gave_up))
        + _tile(tr("No agent free"), str(i.no_agent), tr("heard the message"))
        + _tile(tr("Served by the menu"), str(i.self_service), tr("opted out, or listened and hung up"))
        + (_tile(tr("Untracked"), str(i.untracked), tr("ended during a service restart")) if i.untracked else "")
        + "</div>"
    )


# ---------------------------------------------------------------------- page ---
def _campaign_section(r: CampaignDay, tr: Callable[..., str], hours: list[str], zone_name: str) -> str:
    ok = r.within_cap_day and r.within_cap_30d
    pill = (
        f'<span class="pill ok">{tr("Within abandon cap")}</span>'
        if ok
        else f'<span class="pill bad">{tr("Abandon cap exceeded")}</span>'
    )
    cap = r.abandon_cap
    tiles = "".join(
        [
            _tile(tr("Calls"), f"{r.calls}", tr("{n} answered", n=r.answered)),
            _tile(
                tr("Connected to agent"),
                f"{r.connects}",
                _pct(r.connects / r.calls if r.calls else None, 0) + tr(" of calls"),
            ),
            _tile(tr("Abandoned"), f"{r.abandoned}", tr("heard the information message")),
            _tile(
                tr("Abandon rate today"),
                _pct(r.abandon_rate_day),
                tr("cap {c} %", c=f"{cap * 100:.1f}") + _meter(r.abandon_rate_day, cap),
                "ok" if r.within_cap_day else "bad",
            ),
            _tile(
                tr("Abandon rate 30 days"),
                _pct(r.abandon_rate_30d),
                f"{r.abandoned_30d} / {r.abandoned_30d + r.connects_30d}" + _meter(r.abandon_rate_30d, cap),
                "ok" if r.within_cap_30d else "bad",
            ),
            _tile(
                tr("Answer → agent within 2 s"),
                _pct(r.answer_to_agent_within_2s, 0),
                f"p50 {_ms(r.answer_to_agent_p50_ms)} · p99 {_ms(r.answer_to_agent_p99_ms)}",
                "" if r.answer_to_agent_within_2s is None else ("ok" if r.answer_to_agent_within_2s >= 0.99 else "bad"),
            ),
            _tile(
                tr("Callbacks"),
                tr("{n} scheduled", n=r.callbacks.scheduled),
                tr(
                    "{d} done · {m} missed · {c} cancelled",
                    d=r.callbacks.done,
                    m=r.callbacks.missed,
                    c=r.callbacks.cancelled,
                ),
            ),
            _tile(
                tr("Callbacks overdue"),
                f"{r.callbacks.overdue}",
                tr("still scheduled past their time"),
                "bad" if r.callbacks.overdue else "",
            ),
            _tile(
                tr("Monitoring"),
                tr("{n} sessions", n=r.monitoring.sessions),
                tr("{m} min · {s} supervisors", m=f"{r.monitoring.monitored_s / 60:.1f}", s=r.monitoring.supervisors)
                + (tr(" · {n} ended on a fault", n=r.monitoring.ended_on_fault) if r.monitoring.ended_on_fault else ""),
            ),
        ]
    )
    rates = [h.abandon_rate for h in r.hours]
    ymax_rate = _nice_max(max([cap * 1.5] + [v for v in rates if v is not None]))
    abandon_svg = _bar_chart(
        rates,
        hours,
        ymax=ymax_rate,
        fmt=lambda v: f"{v * 100:g}%",
        colour=lambda v: BAD if v > cap else GOOD,
        line=cap,
        line_label=tr("cap {c} %", c=f"{cap * 100:.0f}"),
        label_every=3,
    )
    occupancy_svg = _bar_chart(
        [h.occupancy for h in r.hours],
        hours,
        ymax=1.0,
        fmt=lambda v: f"{v * 100:.0f}%",
        colour=lambda v: ACCENT,
        label_every=3,
    )
    ring_counts = [float(n) for _, n in r.ring_histogram]
    ring_svg = _bar_chart(
        ring_counts,
        [b for b, _ in r.ring_histogram],
        ymax=_nice_max(max(ring_counts), integer=True),
        fmt=lambda v: f"{v:.0f}",
        colour=lambda v: "#6c8fd6",
    )
    calls_svg = _bar_chart(
        [float(h.calls) if h.calls else None for h in r.hours],
        hours,
        ymax=_nice_max(max(h.calls for h in r.hours), integer=True),
        fmt=lambda v: f"{v:.0f}",
        colour=lambda v: "#9aa5b8",
        label_every=3,
    )
    blocks = (
        "".join(
            f"<tr><td>{escape(tr(BLOCK_LABELS.get(k, k.replace('_', ' '))))}</td><td class='num'>{v}</td></tr>"
            for k, v in r.blocks.items()
        )
        or f"<tr><td class='muted' colspan='2'>{tr('none')}</td></tr>"
    )
    ring_median = "–" if r.ring_p50_s is None else f"{r.ring_p50_s:.1f} s"
    return f"""
<section class="campaign">
  <div class="head"><h2>{escape(r.campaign_name)} <span class="muted">#{r.campaign_id}</span></h2>{pill}</div>
  <div class="tiles">{tiles}</div>
  <div class="grid">
    <div class="card"><h3>{tr("Abandon rate by hour")}</h3>
      <p class="hint">{tr("Red bars are hours over the cap (dashed line).")}</p>{abandon_svg}</div>
    <div class="card"><h3>{tr("Agent occupancy by hour")}</h3>
      <p class="hint">{tr("Time on calls and wrap-up / time staffed.")}</p>{occupancy_svg}</div>
    <div class="card"><h3>{tr("Ring time until answer or give-up")}</h3>
      <p class="hint">{tr("Calls per bin; median {m}.", m=ring_median)}</p>{ring_svg}</div>
    <div class="card"><h3>{tr("Calls by hour")}</h3>
      <p class="hint">{escape(tr("Attempts placed ({zone} hours).", zone=zone_name))}</p>{calls_svg}</div>
  </div>
  <div class="card wide"><h3>{tr("Outcomes")}</h3>{_stacked(r.outcomes, tr)}</div>
  <div class="card wide"><h3>{tr("Return calls (inbound)")}</h3>
    <p class="hint">{tr("Callers on the return-call line matched to this campaign. Not part of the abandon rate.")}</p>
    {_inbound_tiles(r.inbound, tr)}</div>
  <div class="grid">
    <div class="card"><h3>{tr("Dialling blocked before the call")}</h3>
      <div class="tiles small">{_tile(tr("Outside calling window"), str(r.blocked_outside_window))}
      {_tile(tr("Do-not-call / prohibited"), str(r.blocked_dnc))}</div>
      <table>{blocks}</table></div>
    <div class="card"><h3>{tr("Recordings")}</h3>
      <div class="tiles small">{_tile(tr("Stored today"), str(r.recordings_stored))}
      {_tile(tr("Purged today"), str(r.recordings_purged))}
      {_tile(tr("On complaint hold"), str(r.recordings_on_hold))}</div></div>
  </div>
</section>"""


_CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:#f3f5f9;color:#1f2a3d}header{background:linear-gradient(120deg,#1f2a3d,#2f4a7a);color:#fff;
padding:22px 32px}header h1{margin:0;font-size:22px;font-weight:600}header p{margin:4px 0 0;opacity:.8}
main{padding:20px 32px 40px;max-width:1280px;margin:auto}.campaign{margin-bottom:36px}
.head{display:flex;align-items:center;gap:14px;margin:8px 0 14px}.head h2{margin:0;font-size:20px}
.pill{padding:4px 12px;border-radius:999px;font-weight:600;font-size:12px}.pill.ok{background:#dff3e9;color:#1c7a4f}
.pill.bad{background:#fbe3e3;color:#b42828}.tiles{display:grid;grid-template-columns:repeat(6,1fr);gap:12px}
.tiles.small{grid-template-columns:repeat(3,1fr);margin-bottom:10px}
.tile{background:#fff;border-radius:10px;padding:12px 14px;box-shadow:0 1px 2px rgba(20,30,60,.08);
border-top:3px solid #d5dbe6}
.tile.ok{border-top-color:#2e9d6a}.tile.bad{border-top-color:#d64545}
.tile .label{font-size:12px;color:#6b778c;text-transform:uppercase;letter-spacing:.03em}
.tile .value{font-size:26px;font-weight:650;margin:2px 0}.tile .sub{font-size:12px;color:#6b778c}
.tiles.small .tile{box-shadow:none;background:#f7f8fb}.tiles.small .value{font-size:20px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:14px;margin-top:14px}.card{background:#fff;border-radius:10px;
padding:14px 16px;box-shadow:0 1px 2px rgba(20,30,60,.08)}.card.wide{margin-top:14px}.card h3{margin:0;font-size:15px}
.hint{margin:2px 0 6px;color:#6b778c;font-size:12px}.ax{font-size:10px;fill:#6b778c}.cap{font-size:11px;fill:#d64545;
font-weight:600}.meter{position:relative;height:6px;background:#edf0f5;border-radius:3px;margin-top:6px}
.meter .fill{height:6px;border-radius:3px}.meter .capmark{position:absolute;left:66.7%;top:-3px;width:2px;height:12px;
background:#1f2a3d}.stack{display:flex;height:22px;border-radius:6px;overflow:hidden;margin:10px 0}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;font-size:13px}.legend i{display:inline-block;width:10px;height:10px;
border-radius:2px;margin-right:6px}table{width:100%;border-collapse:collapse}
td{padding:4px 0;border-bottom:1px solid #eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#6b778c;font-weight:400}
footer{color:#6b778c;font-size:12px;max-width:1280px;margin:auto;padding:0 32px 30px}
"""


def html_page(
    reports: list[CampaignDay],
    *,
    day: date,
    generated_at: datetime,
    inbound_without_campaign: InboundDay | None = None,
    locale: str = "en",
    zone: ZoneInfo | None = None,
) -> str:
    tr = _translator(locale)
    tz = zone or ZoneInfo("UTC")
    # The day is a UTC day; its hours are labelled with the clock time in `zone`.
    start = datetime.combine(day, time(), tzinfo=UTC)
    hours = [f"{datetime.fromtimestamp(start.timestamp() + h * 3600, tz).hour:02d}" for h in range(24)]
    body = "".join(_campaign_section(r, tr, hours, tz.key) for r in reports) or (
        f'<p class="muted">{tr("No campaign activity on this day.")}</p>'
    )
    if inbound_without_campaign is not None and inbound_without_campaign.calls:
        body += f"""
<section class="campaign">
  <div class="head"><h2>{tr("Return calls of no campaign")}</h2></div>
  <div class="card wide"><p class="hint">{
            tr("Callers on the return-call line whose number and dialled line matched no campaign.")
        }</p>{_inbound_tiles(inbound_without_campaign, tr)}</div>
</section>"""
    if locale == "fi":
        day_text = f"{FI_WEEKDAYS[day.weekday()]} {day.day}.{day.month}.{day.year}"
    else:
        day_text = day.strftime("%A %d %B %Y")
    count = tr("1 campaign") if len(reports) == 1 else tr("{n} campaigns", n=len(reports))
    generated = generated_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") + f" {tz.key}"
    footer = tr(
        "Abandon rate = abandoned / (abandoned + connected to an agent) over outbound calls; a call is abandoned when a"
        " person answered and no agent took it within 2 seconds. Return calls (inbound) are counted apart. The 30-day"
        " rate covers the 30 days ending with this day. Generated {at}.",
        at=generated,
    )
    return f"""<!DOCTYPE html>
<html lang="{"fi" if locale == "fi" else "en"}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{tr("HitCall compliance report")} {day.isoformat()}</title><style>{_CSS}</style></head>
<body><header><h1>{tr("HitCall · Daily compliance report")}</h1>
<p>{day_text} ({escape(tr("UTC day; times in {zone}", zone=tz.key))}) · {count}</p></header>
<main>{body}</main>
<footer>{escape(footer)}</footer></body></html>
"""
