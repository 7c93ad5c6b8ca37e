"""A campaign's disposition codes: code, labels (Finnish, English), agent phone key, rule."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...auth import Role
from ...core.dispositions import CODE_PATTERN, Rule, validate_list
from ...store import dispositions as store
from ...store.db import Executor
from ..registry import V1, Ctx, Registry
from ..types import In, Out
from .campaigns import load as load_campaign

READ = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.COMPLIANCE, Role.INTEGRATION, Role.AGENT})
MANAGE = frozenset({Role.ADMIN, Role.SUPERVISOR})
PhoneKey = Literal["3", "4", "5", "6", "7", "8", "9"]


class DispositionItem(In):
    code: str = Field(pattern=f"^{CODE_PATTERN.pattern}$", examples=["sale"])
    label_fi: str = Field(min_length=1, max_length=100, pattern=r"\S", examples=["Kauppa"])
    label_en: str = Field(min_length=1, max_length=100, pattern=r"\S", examples=["Sale"])
    phone_key: PhoneKey | None = Field(default=None, description="the agent's phone key for this code (3-9)")
    rule: Rule = Field(
        description="final: the contact is done; retry: dial again after retry_delay_s; callback: a callback at a"
        " time (callback_at); do_not_call: the number goes on the global do-not-call list; wrong_number: the"
        " contact fails; recycle: back into the list after recycle_days with its attempts counted anew"
    )
    retry_delay_s: int | None = Field(default=None, ge=60, le=2592000, description="rule retry only (required)")
    recycle_days: int | None = Field(default=None, ge=1, le=365, description="rule recycle only (required)")


class DispositionOut(Out):
    code: str
    label_fi: str
    label_en: str
    phone_key: str | None
    rule: Rule
    retry_delay_s: int | None
    recycle_days: int | None


class DispositionList(Out):
    campaign_id: int
    dispositions: list[DispositionOut]


class DispositionListIn(In):
    dispositions: list[DispositionItem] = Field(max_length=50)


async def _list(conn: Executor, campaign_id: int) -> DispositionList:
    codes = await store.load(conn, campaign_id)
    return DispositionList(
        campaign_id=campaign_id, dispositions=[DispositionOut.model_validate(d.as_dict()) for d in codes]
    )


def register(reg: Registry) -> None:
    @reg.add(
        "GET",
        f"{V1}/campaigns/{{campaign_id}}/dispositions",
        summary="A campaign's disposition codes",
        tag="campaigns",
        roles=READ,
        scope="campaigns:read",
        response=DispositionList,
    )
    async def list_dispositions(ctx: Ctx) -> DispositionList:
        campaign_id = ctx.params["campaign_id"]
        await load_campaign(ctx.pool, campaign_id)
        return await _list(ctx.pool, campaign_id)

    @reg.add(
        "PUT",
        f"{V1}/campaigns/{{campaign_id}}/dispositions",
        summary="Replace a campaign's disposition codes",
        tag="campaigns",
        roles=MANAGE,
        scope="campaigns:write",
        body=DispositionListIn,
        response=DispositionList,
        description="The list sent becomes the campaign's whole list (add, change and remove codes in one call);"
        " codes and phone keys must be unique. A new campaign starts with the codes of phone keys 3-9.",
    )
    async def replace_dispositions(ctx: Ctx) -> DispositionList:
        campaign_id = ctx.params["campaign_id"]
        items = validate_list([i.model_dump(mode="json") for i in ctx.body.dispositions])
        async with ctx.tx() as conn:
            await load_campaign(conn, campaign_id, for_update=True)
            before = [d.code for d in await store.load(conn, campaign_id)]
            await store.replace(conn, campaign_id, items)
            await ctx.audit(
                conn,
                "campaign.dispositions",
                "campaign",
                campaign_id,
                {"before": before, "after": [d.as_dict() for d in items]},
            )
            return await _list(conn, campaign_id)
