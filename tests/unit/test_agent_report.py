"""Agent productivity figures (core.agent_report) on constructed state logs and CDRs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.core.agent_report import agent_days, day_window, report_zone, state_seconds
from hitcall_pbx.errors import ValidationFailed

HEL = ZoneInfo("Europe/Helsinki")
DAY = date(2026, 3, 3)
START, END = day_window(DAY, HEL)  # 2026-03-02 22:00 UTC .. 2026-03-03 22:00 UTC
STATES = ["ready", "reserved", "on_call", "wrap_up", "paused", "logged_out"]


def _log(agent_id: int, at: datetime, spans: list[tuple[str, float, str | None]]) -> list[dict]:
    """Back-to-back intervals from `at`: (state, seconds, pause code)."""
    rows = []
    for state, seconds, code in spans:
        rows.append(
            {
                "agent_id": agent_id,
                "state": state,
                "pause_code": code,
                "started_at": at,
                "ended_at": at + timedelta(seconds=seconds),
            }
        )
        at += timedelta(seconds=seconds)
    return rows


def _call(agent_id: int, at: datetime, *, bridged: bool, disposition: str | None = None) -> dict:
    return {
        "agent_id": agent_id,
        "created_at": at,
        "bridged_at": at + timedelta(seconds=5) if bridged else None,
        "disposition": disposition,
    }


def test_a_shift_in_figures() -> None:
    eight = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)  # 08:00 in Helsinki
    log = _log(
        7,
        eight,
        [
            ("ready", 600, None),
            ("reserved", 20, None),
            ("on_call", 300, None),
            ("wrap_up", 60, None),
            ("paused", 900, "lunch"),
            ("ready", 100, None),
            ("reserved", 10, None),
            ("on_call", 120, None),
            ("wrap_up", 30, None),
            ("paused", 300, "training"),
            ("paused", 60, "lunch"),
            ("logged_out", 3600, None),
        ],
    )
    calls = [
        _call(7, eight + timedelta(seconds=600), bridged=True, disposition="sale"),
        _call(7, eight + timedelta(seconds=1700), bridged=True, disposition="callback"),
        _call(7, eight + timedelta(seconds=2000), bridged=False),
        _call(8, eight, bridged=True),
        _call(7, START - timedelta(minutes=1), bridged=True),  # the day before, local time
    ]
    names = {7: {"number": "1007", "name": "Aino"}}
    (mine, other) = agent_days(DAY, HEL, log, calls, now=eight + timedelta(days=1), agents=names)
    assert (mine.agent_id, mine.number, mine.name) == (7, "1007", "Aino")
    assert (mine.ready_s, mine.reserved_s, mine.talk_s, mine.wrap_up_s, mine.paused_s) == (700, 30, 420, 90, 1260)
    assert mine.logged_in_s == 2500
    assert mine.pause_s == {"lunch": 960, "training": 300}
    assert (mine.calls, mine.connects, mine.dispositions) == (3, 2, {"sale": 1, "callback": 1})
    assert mine.average_handle_s == (420 + 90) / 2
    assert mine.occupancy == pytest.approx(510 / 2500)
    assert (other.agent_id, other.calls, other.connects, other.logged_in_s, other.average_handle_s) == (8, 1, 1, 0, 0)
    assert mine.as_dict()["pause_s"] == {"lunch": 960.0, "training": 300.0}


def test_intervals_are_cut_at_local_midnight_and_open_ones_run_to_now() -> None:
    log = _log(1, START - timedelta(hours=1), [("ready", 7200, None)])  # 23:00 .. 01:00 local
    log.append(
        {"agent_id": 1, "state": "paused", "pause_code": "x", "started_at": END - timedelta(hours=2), "ended_at": None}
    )
    (d,) = agent_days(DAY, HEL, log, [], now=END - timedelta(minutes=30))
    assert d.ready_s == 3600 and d.paused_s == 5400 and d.logged_in_s == 9000
    (d,) = agent_days(DAY, HEL, log, [], now=END + timedelta(hours=5))
    assert d.paused_s == 7200, "an open interval counts to the day's end at most"


def test_days_the_clocks_change_are_23_and_25_hours() -> None:
    spring, autumn = date(2026, 3, 29), date(2026, 10, 25)
    for day, hours in ((spring, 23), (autumn, 25)):
        start, end = day_window(day, HEL)
        assert end - start == timedelta(hours=hours)
        log = _log(3, start - timedelta(hours=2), [("ready", (hours + 4) * 3600, None)])
        (d,) = agent_days(day, HEL, log, [], now=end + timedelta(days=1))
        assert d.logged_in_s == hours * 3600


def test_an_agent_without_time_or_calls_is_left_out_and_bad_zones_refused() -> None:
    log = _log(4, START, [("logged_out", 3600, None)])
    assert agent_days(DAY, HEL, log, [], now=END) == []
    with pytest.raises(ValidationFailed) as exc:
        report_zone("Mars/Olympus")
    assert exc.value.details["field"] == "tz"
    assert report_zone(None) == HEL


spans = st.lists(
    st.tuples(
        st.sampled_from(STATES),
        st.floats(min_value=0, max_value=6 * 3600, allow_nan=False),
        st.sampled_from(["lunch", "coffee", "training"]),
    ),
    min_size=1,
    max_size=30,
)


@given(spans=spans, offset_h=st.floats(min_value=-30, max_value=30), now_h=st.floats(min_value=-30, max_value=60))
def test_time_in_states_sums_to_logged_in_time(
    spans: list[tuple[str, float, str]], offset_h: float, now_h: float
) -> None:
    rows = _log(1, START + timedelta(hours=offset_h), [(s, sec, c if s == "paused" else None) for s, sec, c in spans])
    rows[-1]["ended_at"] = None  # the agent's current state
    now = START + timedelta(hours=now_h)
    days = agent_days(DAY, HEL, rows, [], now=now)
    per_state, per_code = state_seconds(rows, START, END, now)
    assert all(v > 0 for v in per_state.values())
    on_shift = sum(v for s, v in per_state.items() if s != "logged_out")
    if not days:
        assert on_shift == 0
        return
    (d,) = days
    parts = d.ready_s + d.reserved_s + d.talk_s + d.wrap_up_s + d.paused_s
    assert parts == pytest.approx(d.logged_in_s, abs=1e-6)
    assert d.logged_in_s == pytest.approx(on_shift, abs=1e-6)
    assert sum(d.pause_s.values()) == pytest.approx(d.paused_s, abs=1e-6)
    assert 0 <= d.logged_in_s + per_state.get("logged_out", 0) <= (END - START).total_seconds() + 1e-6
