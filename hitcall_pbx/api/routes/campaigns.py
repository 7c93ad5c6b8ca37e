"""Campaigns: CRUD, start / pause / stop and live statistics."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from ...auth import Role
from ...core.compliance import abandon_rate
from ...core.phone import DEFAULT_TZ
from ...errors import Conflict, ValidationFailed
from ...hooks.events import enqueue
from ...store import supervision
from ..registry import V1, Ctx, Registry, found
from ..repos import campaigns as repo
from ..types import UNSET, In, MediaUri, Out, Patch, Phone, Query, Text

READ = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.COMPLIANCE, Role.INTEGRATION})
MANAGE = frozenset({Role.ADMIN, Role.SUPERVISOR})
STATS = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.INTEGRATION})

Mode = Literal["preview", "progressive", "predictive"]
State = Literal["draft", "running", "paused", "finished"]
HhMm = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["09:00"])]
# A sound name: no extension, no dots (so no path traversal), at most four segments.
SoundName = Annotated[
    str, Field(max_length=200, pattern=r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}$", examples=["acme/vm-fi"])
]


def _unique_days(days: list[int]) -> list[int]:
    if len(set(days)) != len(days):
        raise ValueError("weekdays must not repeat")
    return sorted(days)


Weekdays = Annotated[
    list[Annotated[int, Field(ge=1, le=7)]], Field(min_length=1, max_length=7), AfterValidator(_unique_days)
]

# action -> (states it may start from, new state)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({"draft", "paused"}), "running"),
    "pause": (frozenset({"running"}), "paused"),
    "stop": (frozenset({"draft", "running", "paused"}), "finished"),
}


class _Settings(In):
    caller_id: Phone | None = Field(default=None, description="required to start")
    ring_timeout_s: int = Field(default=25, ge=15, le=180)
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_busy_s: int = Field(default=900, ge=60, le=2592000)
    retry_no_answer_s: int = Field(default=3600, ge=60, le=2592000)
    retry_congestion_s: int = Field(default=600, ge=60, le=2592000)
    retry_machine_s: int = Field(default=7200, ge=60, le=2592000)
    wrap_up_s: int = Field(default=10, ge=0, le=3600)
    abandon_cap: float = Field(default=0.03, ge=0, le=0.2, description="fraction, 0.03 = 3 %")
    info_message_sound: MediaUri | None = Field(default=None, description="required to start a predictive campaign")
    amd_enabled: bool = False
    record_calls: bool = False
    recording_announcement: MediaUri | None = None
    voicemail_drop: bool = Field(
        default=False,
        description="leave voicemail_message on an answering machine (after its beep) instead of hanging up;"
        " needs amd_enabled and voicemail_message. The outcome stays answered_machine; the CDR says"
        " voicemail_dropped",
    )
    voicemail_message: SoundName | None = Field(
        default=None, description="Asterisk sound name of the message, without extension, e.g. acme/voicemail-fi"
    )
    window_start: HhMm = "09:00"
    window_end: HhMm = "20:00"
    window_days: Weekdays = Field(default_factory=lambda: [1, 2, 3, 4, 5], description="ISO weekdays, 1 = Monday")
    priority: int = Field(default=0, ge=-1000, le=1000)
    preview_offer_timeout_s: int = Field(default=30, ge=5, le=600)
    callback_skip_delay_s: int = Field(
        default=900, ge=0, le=604800, description="seconds a skipped preview callback waits before it is offered again"
    )
    callback_delay_s: int = Field(
        default=86400,
        ge=0,
        le=2592000,
        description="a callback by the agent's phone key is due this many seconds later, moved into the calling window",
    )
    callback_grace_s: int = Field(
        default=900,
        ge=0,
        le=604800,
        description="a personal callback whose agent is not logged in goes to any agent this long after its time",
    )
    disposition_required: bool = Field(
        default=False, description="the agent cannot end wrap-up (go ready) until the call has a disposition"
    )
    max_lines_per_agent: float = Field(default=3, ge=1, le=10)
    retention_recordings_months: int = Field(default=6, ge=2, le=6)
    retention_cdr_months: int = Field(default=24, ge=1, le=120)
    company_name: Text | None = None
    callback_number: Phone | None = None


class CampaignCreate(_Settings):
    name: Text
    mode: Mode

    @model_validator(mode="after")
    def _window(self) -> CampaignCreate:
        if self.window_start >= self.window_end:
            raise ValidationFailed("window_end must be after window_start", details={"field": "window_end"})
        _check_voicemail(self.model_dump())
        return self


class CampaignUpdate(Patch):
    name: Text = UNSET
    mode: Mode = UNSET
    caller_id: Phone | None = None
    ring_timeout_s: int = Field(default=UNSET, ge=15, le=180)
    max_attempts: int = Field(default=UNSET, ge=1, le=100)
    retry_busy_s: int = Field(default=UNSET, ge=60, le=2592000)
    retry_no_answer_s: int = Field(default=UNSET, ge=60, le=2592000)
    retry_congestion_s: int = Field(default=UNSET, ge=60, le=2592000)
    retry_machine_s: int = Field(default=UNSET, ge=60, le=2592000)
    wrap_up_s: int = Field(default=UNSET, ge=0, le=3600)
    abandon_cap: float = Field(default=UNSET, ge=0, le=0.2)
    info_message_sound: MediaUri | None = None
    amd_enabled: bool = UNSET
    record_calls: bool = UNSET
    recording_announcement: MediaUri | None = None
    voicemail_drop: bool = UNSET
    voicemail_message: SoundName | None = None
    window_start: HhMm = UNSET
    window_end: HhMm = UNSET
    window_days: Weekdays = UNSET
    priority: int = Field(default=UNSET, ge=-1000, le=1000)
    preview_offer_timeout_s: int = Field(default=UNSET, ge=5, le=600)
    callback_skip_delay_s: int = Field(default=UNSET, ge=0, le=604800)
    callback_delay_s: int = Field(default=UNSET, ge=0, le=2592000)
    callback_grace_s: int = Field(default=UNSET, ge=0, le=604800)
    disposition_required: bool = UNSET
    max_lines_per_agent: float = Field(default=UNSET, ge=1, le=10)
    retention_recordings_months: int = Field(default=UNSET, ge=2, le=6)
    retention_cdr_months: int = Field(default=UNSET, ge=1, le=120)
    company_name: Text | None = None
    callback_number: Phone | None = None


class Campaign(Out):
    id: int
    name: str
    mode: Mode
    state: State
    caller_id: str | None
    ring_timeout_s: int
    max_attempts: int
    retry_busy_s: int
    retry_no_answer_s: int
    retry_congestion_s: int
    retry_machine_s: int
    wrap_up_s: int
    abandon_cap: float
    info_message_sound: str | None
    amd_enabled: bool
    record_calls: bool
    recording_announcement: str | None
    voicemail_drop: bool
    voicemail_message: str | None
    window_start: str
    window_end: str
    window_days: list[int]
    priority: int
    preview_offer_timeout_s: int
    callback_skip_delay_s: int
    callback_delay_s: int
    callback_grace_s: int
    disposition_required: bool
    max_lines_per_agent: float
    retention_recordings_months: int
    retention_cdr_months: int
    company_name: str | None
    callback_number: str | None
    list_ids: list[int]
    created_at: datetime
    updated_at: datetime


class CampaignList(Out):
    items: list[Campaign]


class CampaignFilter(Query):
    state: State | None = None


class AbandonWindow(Out):
    abandoned: int
    connected: int = Field(description="answered calls given to an agent")
    rate: float = Field(description="abandoned / (abandoned + connected)")


class CampaignStats(Out):
    campaign_id: int
    state: State
    abandon_cap: float
    today: AbandonWindow = Field(description=f"calendar day in {DEFAULT_TZ}")
    last_30_days: AbandonWindow
    over_cap: bool
    agents_by_state: dict[str, int]
    calls_in_progress: int
    calls_by_state: dict[str, int]


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


def _out(row: Any) -> Campaign:
    data = dict(row)
    data["window_start"], data["window_end"] = _hhmm(row["window_start"]), _hhmm(row["window_end"])
    return Campaign.model_validate(data)


def _to_db(data: dict[str, Any]) -> dict[str, Any]:
    for key in ("window_start", "window_end"):
        if data.get(key) is not None:
            data[key] = time.fromisoformat(data[key])
    return data


def _check_voicemail(settings: dict[str, Any]) -> None:
    """Voicemail drop needs AMD (to know a machine answered) and a message."""
    if settings.get("voicemail_drop") and not (settings.get("amd_enabled") and settings.get("voicemail_message")):
        raise ValidationFailed(
            "voicemail_drop needs amd_enabled and a voicemail_message", details={"field": "voicemail_drop"}
        )


async def load(conn: Any, campaign_id: int, *, for_update: bool = False) -> Any:
    return found(await repo.get(conn, campaign_id, for_update=for_update), "campaign", "campaign_id", campaign_id)


async def check_campaign(conn: Any, campaign_id: int | None) -> None:
    """ValidationFailed (field campaign_id) when a referenced campaign does not exist."""
    if campaign_id is not None and not await repo.exists(conn, campaign_id):
        raise ValidationFailed(f"campaign {campaign_id} does not exist", details={"field": "campaign_id"})


def register(reg: Registry) -> None:
    @reg.add(
        "GET",
        f"{V1}/campaigns",
        summary="List campaigns",
        tag="campaigns",
        roles=READ,
        scope="campaigns:read",
        query=CampaignFilter,
        response=CampaignList,
        description="A supervisor sees the campaigns they supervise.",
    )
    async def list_campaigns(ctx: Ctx) -> CampaignList:
        rows = await repo.list_all(ctx.pool, ctx.query.state)
        supervised = await ctx.supervised()  # a supervisor: their campaigns only
        return CampaignList(items=[_out(r) for r in rows if supervised is None or r["id"] in supervised])

    @reg.add(
        "POST",
        f"{V1}/campaigns",
        summary="Create a campaign (state draft)",
        tag="campaigns",
        roles=MANAGE,
        scope="campaigns:write",
        body=CampaignCreate,
        response=Campaign,
        status=201,
        description="A supervisor acts only on the campaigns they supervise (those of their phone's agent row);"
        " the campaign a supervisor creates joins them.",
    )
    async def create_campaign(ctx: Ctx) -> Campaign:
        data = _to_db(ctx.body.model_dump())
        async with ctx.tx() as conn:
            campaign_id = await repo.insert(conn, data)
            if ctx.me.role is Role.SUPERVISOR:  # the supervisor who creates it supervises it (their phone's)
                await supervision.add_to_supervisor(conn, ctx.me.user_id, campaign_id)
            # No name: the audit log cannot be erased, so its rows carry ids and codes only.
            await ctx.audit(conn, "campaign.create", "campaign", campaign_id, {"mode": data["mode"]})
            row = await load(conn, campaign_id)
        await ctx.notify_dialer(ctx.deps.dialer.campaign_changed(campaign_id))
        return _out(row)

    @reg.add(
        "GET",
        f"{V1}/campaigns/{{campaign_id}}",
        summary="Get a campaign",
        tag="campaigns",
        roles=READ,
        scope="campaigns:read",
        response=Campaign,
    )
    async def get_campaign(ctx: Ctx) -> Campaign:
        return _out(await load(ctx.pool, ctx.params["campaign_id"]))

    @reg.add(
        "PATCH",
        f"{V1}/campaigns/{{campaign_id}}",
        summary="Change a campaign's settings",
        tag="campaigns",
        roles=MANAGE,
        scope="campaigns:write",
        body=CampaignUpdate,
        response=Campaign,
    )
    async def update_campaign(ctx: Ctx) -> Campaign:
        campaign_id = ctx.params["campaign_id"]
        changes = _to_db(ctx.body.changes())
        async with ctx.tx() as conn:
            current = await load(conn, campaign_id, for_update=True)
            _check_voicemail({**dict(current), **changes})
            await repo.update(conn, campaign_id, changes)
            await ctx.audit(conn, "campaign.update", "campaign", campaign_id, {"fields": sorted(changes)})
            row = await load(conn, campaign_id)
        await ctx.notify_dialer(ctx.deps.dialer.campaign_changed(campaign_id))
        return _out(row)

    @reg.add(
        "DELETE",
        f"{V1}/campaigns/{{campaign_id}}",
        summary="Delete a campaign that never dialled",
        tag="campaigns",
        roles=MANAGE,
        scope="campaigns:write",
        description="A campaign with call attempts cannot be deleted (409): stop it instead.",
    )
    async def delete_campaign(ctx: Ctx) -> None:
        campaign_id = ctx.params["campaign_id"]
        async with ctx.tx() as conn:
            row = await load(conn, campaign_id, for_update=True)
            if row["state"] == "running":
                raise Conflict("a running campaign cannot be deleted; stop it first", details={"state": "running"})
            await repo.delete(conn, campaign_id)
            await ctx.audit(conn, "campaign.delete", "campaign", campaign_id)
        await ctx.notify_dialer(ctx.deps.dialer.campaign_changed(campaign_id))

    for action, (sources, target) in TRANSITIONS.items():
        _register_transition(reg, action, sources, target)

    @reg.add(
        "GET",
        f"{V1}/campaigns/{{campaign_id}}/stats",
        summary="Live statistics of a campaign",
        tag="campaigns",
        roles=STATS,
        scope="campaigns:read",
        response=CampaignStats,
        description="Abandon rate = abandoned / (abandoned + connected to an agent), today and over 30 days.",
    )
    async def campaign_stats(ctx: Ctx) -> CampaignStats:
        campaign_id = ctx.params["campaign_id"]
        async with ctx.pool.acquire() as conn:
            row = await load(conn, campaign_id)
            counts = await repo.abandon_counts(conn, campaign_id, DEFAULT_TZ)
            agents = await repo.agents_by_state(conn, campaign_id)
            calls = await repo.calls_by_state(conn, campaign_id)
        cap = float(row["abandon_cap"])
        day, period = (
            AbandonWindow(
                abandoned=counts[f"{w}_abandoned"],
                connected=counts[f"{w}_connected"],
                rate=abandon_rate(counts[f"{w}_abandoned"], counts[f"{w}_connected"]),
            )
            for w in ("day", "period")
        )
        states = ("ready", "reserved", "on_call", "wrap_up", "paused", "logged_out")
        return CampaignStats(
            campaign_id=campaign_id,
            state=row["state"],
            abandon_cap=cap,
            today=day,
            last_30_days=period,
            over_cap=day.rate > cap or period.rate > cap,
            agents_by_state={s: agents.get(s, 0) for s in states},
            calls_in_progress=sum(calls.values()),
            calls_by_state=calls,
        )


def _register_transition(reg: Registry, action: str, sources: frozenset[str], target: str) -> None:
    async def handler(ctx: Ctx) -> Campaign:
        campaign_id = ctx.params["campaign_id"]
        async with ctx.tx() as conn:
            row = await load(conn, campaign_id, for_update=True)
            previous = row["state"]
            if previous not in sources:
                raise Conflict(
                    f"cannot {action} a campaign in state {previous}",
                    details={"state": previous, "allowed_from": sorted(sources)},
                    code="illegal_transition",
                )
            await repo.set_state(conn, campaign_id, target)
            await ctx.audit(conn, f"campaign.{action}", "campaign", campaign_id, {"from": previous, "to": target})
            change = {"campaign_id": campaign_id, "state": target, "previous_state": previous}
            await enqueue(conn, "campaign.state_changed", f"campaign:{campaign_id}", change)
            row = await load(conn, campaign_id)
        await ctx.notify_dialer(ctx.deps.dialer.campaign_changed(campaign_id))
        ctx.deps.announce("campaign.state_changed", f"campaign:{campaign_id}", change)
        return _out(row)

    handler.__name__ = f"{action}_campaign"
    reg.add(
        "POST",
        f"{V1}/campaigns/{{campaign_id}}/{action}",
        summary=f"{action.capitalize()} a campaign",
        tag="campaigns",
        roles=MANAGE,
        scope="campaigns:control",
        response=Campaign,
        description=f"Allowed from {', '.join(sorted(sources))}; the new state is {target}. Audited, and a"
        " campaign.state_changed webhook event is queued in the same transaction.",
    )(handler)
