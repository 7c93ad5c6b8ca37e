"""Do-not-call / marketing prohibition entries, global or per campaign."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import Field, model_validator

from ...auth import Role
from ...errors import Forbidden, NotFound, ValidationFailed
from ..registry import V1, Ctx, Registry
from ..repos import dnc as repo
from ..types import BIGINT_MAX, Id, In, Out, Page, Phone
from .campaigns import check_campaign

ROLES = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.COMPLIANCE, Role.INTEGRATION})
PERSON_SOURCES = frozenset({"ivr_optout", "subject_request"})
Source = Literal["manual", "import", "api", "agent", "ivr_optout", "subject_request", "registry"]


class DncIn(In):
    phone: Phone
    campaign_id: Id | None = Field(default=None, description="null = every campaign")
    reason: str | None = Field(default=None, max_length=500)
    source: Literal["manual", "api", "registry"] = "api"


class DncEntry(Out):
    id: int
    phone: str
    campaign_id: int | None
    reason: str | None
    source: Source
    created_at: datetime


class DncPage(Out):
    items: list[DncEntry]


class DncFilter(Page):
    scope: Literal["all", "global", "campaign"] = Field(default="all", description="campaign needs campaign_id")
    campaign_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX)

    @model_validator(mode="after")
    def _campaign(self) -> DncFilter:
        if self.scope == "campaign" and self.campaign_id is None:
            raise ValidationFailed("scope=campaign needs campaign_id", details={"field": "campaign_id"})
        return self


class DncSearch(In):
    """A search by number goes in a request body: a number in an address ends up in logs."""

    phone: Phone | None = None
    scope: Literal["all", "global", "campaign"] = Field(default="all", description="campaign needs campaign_id")
    campaign_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX)
    limit: int = Field(default=100, ge=1, le=1000)
    after_id: int | None = Field(default=None, ge=0, le=BIGINT_MAX, description="return items with id > after_id")

    @model_validator(mode="after")
    def _campaign(self) -> DncSearch:
        if self.scope == "campaign" and self.campaign_id is None:
            raise ValidationFailed("scope=campaign needs campaign_id", details={"field": "campaign_id"})
        return self


async def _dnc_page(ctx: Ctx, q: DncFilter | DncSearch, phone: str | None) -> DncPage:
    rows = await repo.find(
        ctx.pool, phone=phone, campaign_id=q.campaign_id, scope=q.scope, limit=q.limit, after_id=q.after_id
    )
    if rows:  # a count only: never the number searched for
        await ctx.audit(ctx.pool, "dnc.list", None, None, {"entries": len(rows)})
    return DncPage(items=[_out(r) for r in rows])


def _out(row: asyncpg.Record) -> DncEntry:
    return DncEntry.model_validate({**dict(row), "phone": row["phone_e164"]})


def register(reg: Registry) -> None:
    @reg.add(
        "GET",
        f"{V1}/dnc",
        summary="List do-not-call entries",
        tag="dnc",
        roles=ROLES,
        scope="dnc:read",
        query=DncFilter,
        response=DncPage,
    )
    async def list_dnc(ctx: Ctx) -> DncPage:
        if "phone" in ctx.request.query:
            raise ValidationFailed(
                "a number is not sent in the address: POST it to /api/v1/dnc/search as phone",
                details={"field": "phone"},
            )
        return await _dnc_page(ctx, ctx.query, None)

    @reg.add(
        "POST",
        f"{V1}/dnc/search",
        summary="Find do-not-call entries by number",
        tag="dnc",
        roles=ROLES,
        scope="dnc:read",
        body=DncSearch,
        response=DncPage,
        description="As GET /dnc, with the number in the body (never in the address). Audited.",
    )
    async def search_dnc(ctx: Ctx) -> DncPage:
        b: DncSearch = ctx.body
        return await _dnc_page(ctx, b, b.phone)

    @reg.add(
        "POST",
        f"{V1}/dnc",
        summary="Add a do-not-call entry",
        tag="dnc",
        roles=ROLES,
        scope="dnc:write",
        body=DncIn,
        response=DncEntry,
        status=201,
        description="Checked before every dial. 409 when the number is already blocked in that scope.",
    )
    async def add_dnc(ctx: Ctx) -> DncEntry:
        b: DncIn = ctx.body
        async with ctx.tx() as conn:
            await check_campaign(conn, b.campaign_id)
            row = await repo.add(conn, b.phone, b.campaign_id, b.reason, b.source)
            await ctx.audit(conn, "dnc.add", "dnc_entry", row["id"], {"campaign_id": b.campaign_id, "source": b.source})
        return _out(row)

    @reg.add(
        "GET",
        f"{V1}/dnc/{{entry_id}}",
        summary="Get a do-not-call entry",
        tag="dnc",
        roles=ROLES,
        scope="dnc:read",
        response=DncEntry,
    )
    async def get_dnc(ctx: Ctx) -> DncEntry:
        row = await repo.get(ctx.pool, ctx.params["entry_id"])
        if row is None:
            raise NotFound(f"do-not-call entry {ctx.params['entry_id']} not found")
        return _out(row)

    @reg.add(
        "DELETE",
        f"{V1}/dnc/{{entry_id}}",
        summary="Remove a do-not-call entry",
        tag="dnc",
        roles=ROLES,
        scope="dnc:write",
    )
    async def remove_dnc(ctx: Ctx) -> None:
        entry_id = ctx.params["entry_id"]
        async with ctx.tx() as conn:
            row = await repo.get(conn, entry_id)
            if row is None:
                raise NotFound(f"do-not-call entry {entry_id} not found")
            if row["source"] in PERSON_SOURCES and ctx.me.role not in (Role.ADMIN, Role.COMPLIANCE):
                raise Forbidden(
                    "an opt-out made by the person can only be removed by compliance", code="forbidden_role"
                )
            await repo.delete(conn, entry_id)
            await ctx.audit(
                conn, "dnc.remove", "dnc_entry", entry_id, {"campaign_id": row["campaign_id"], "source": row["source"]}
            )
