"""CRM webhook subscriptions, the deliveries list and replay."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from ...auth import Role
from ...errors import NotFound
from ...hooks.events import EVENT_TYPES
from ..registry import V1, Ctx, Registry
from ..repos import webhooks as repo
from ..types import BIGINT_MAX, Id, In, Out, Page, Patch

ROLES = frozenset({Role.ADMIN, Role.INTEGRATION})
EventType = Literal[EVENT_TYPES + ("*",)]  # type: ignore[valid-type]
Url = Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s]+$", examples=["https://crm.example/hooks"])]


def _unique(values: list[str]) -> list[str]:
    return sorted(set(values))


EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=50), AfterValidator(_unique)]


def new_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class SubscriptionIn(In):
    url: Url
    event_types: EventTypes = Field(description='event types to deliver; ["*"] = all')
    description: str | None = Field(default=None, max_length=500)
    active: bool = True


class SubscriptionUpdate(Patch):
    url: Url = None  # type: ignore[assignment]
    event_types: EventTypes = None  # type: ignore[assignment]
    description: str | None = Field(default=None, max_length=500)
    active: bool = None  # type: ignore[assignment]


class Subscription(Out):
    id: int
    url: str
    event_types: list[str]
    description: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(Subscription):
    secret: str = Field(description="signing secret (Standard Webhooks); shown only in this response")


class SubscriptionList(Out):
    items: list[Subscription]


class DeliveryFilter(Page):
    state: Literal["pending", "delivered", "dead"] | None = None
    subscription_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX)


class Delivery(Out):
    id: int
    subscription_id: int
    event_id: str
    event_type: str
    subject: str
    state: Literal["pending", "delivered", "dead"]
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryList(Out):
    items: list[Delivery]


class ReplayIn(In):
    delivery_ids: list[Id] = Field(min_length=1, max_length=1000)


class Replayed(Out):
    replayed: list[int] = Field(description="the deliveries moved back to pending (those that were dead)")


async def _load(conn: Any, subscription_id: int, *, for_update: bool = False) -> Any:
    """The subscription or 404; `for_update` holds it until the change commits."""
    row = await repo.get_subscription(conn, subscription_id, for_update=for_update)
    if row is None:
        raise NotFound(f"webhook subscription {subscription_id} not found")
    return row


def register(reg: Registry) -> None:
    @reg.add(
        "GET",
        f"{V1}/webhooks/subscriptions",
        summary="List webhook subscriptions",
        tag="webhooks",
        roles=ROLES,
        scope="webhooks:read",
        response=SubscriptionList,
    )
    async def list_subscriptions(ctx: Ctx) -> SubscriptionList:
        rows = await repo.list_subscriptions(ctx.pool)
        return SubscriptionList(items=[Subscription.model_validate(dict(r)) for r in rows])

    @reg.add(
        "POST",
        f"{V1}/webhooks/subscriptions",
        summary="Subscribe a URL to events (secret shown once)",
        tag="webhooks",
        roles=ROLES,
        scope="webhooks:write",
        body=SubscriptionIn,
        response=SubscriptionCreated,
        status=201,
        description="Deliveries are signed per the Standard Webhooks specification (webhook-id,"
        " webhook-timestamp, webhook-signature headers) with the returned secret.",
    )
    async def create_subscription(ctx: Ctx) -> SubscriptionCreated:
        secret = new_secret()
        async with ctx.tx() as conn:
            sub_id = await repo.insert_subscription(conn, {**ctx.body.model_dump(), "secret": secret})
            await ctx.audit(
                conn,
                "webhook_subscription.create",
                "webhook_subscription",
                sub_id,
                {"event_types": ctx.body.event_types},
            )
            row = await _load(conn, sub_id)
        return SubscriptionCreated.model_validate({**dict(row), "secret": secret})

    @reg.add(
        "GET",
        f"{V1}/webhooks/subscriptions/{{subscription_id}}",
        summary="Get a webhook subscription",
        tag="webhooks",
        roles=ROLES,
        scope="webhooks:read",
        response=Subscription,
    )
    async def get_subscription(ctx: Ctx) -> Subscription:
        return Subscription.model_validate(dict(await _load(ctx.pool, ctx.params["subscription_id"])))

    @reg.add(
        "PATCH",
        f"{V1}/webhooks/subscriptions/{{subscription_id}}",
        summary="Change a webhook subscription",
        tag="webhooks",
        roles=ROLES,
        scope="webhooks:write",
        body=SubscriptionUpdate,
        response=Subscription,
    )
    async def update_subscription(ctx: Ctx) -> Subscription:
        sub_id = ctx.params["subscription_id"]
        changes = ctx.body.changes()
        async with ctx.tx() as conn:
            await _load(conn, sub_id, for_update=True)
            await repo.update_subscription(conn, sub_id, changes)
            await ctx.audit(
                conn, "webhook_subscription.update", "webhook_subscription", sub_id, {"fields": sorted(changes)}
            )
            row = await _load(conn, sub_id)
        return Subscription.model_validate(dict(row))

    @reg.add(
        "DELETE",
        f"{V1}/webhooks/subscriptions/{{subscription_id}}",
        summary="Delete a webhook subscription",
        tag="webhooks",
        roles=ROLES,
        scope="webhooks:write",
        description="Its pending deliveries go with it.",
    )
    async def delete_subscription(ctx: Ctx) -> None:
        sub_id = ctx.params["subscription_id"]
        async with ctx.tx() as conn:
            await _load(conn, sub_id, for_update=True)
            await repo.delete_subscription(conn, sub_id)
            await ctx.audit(conn, "webhook_subscription.delete", "webhook_subscription", sub_id)

    @reg.add(
        "GET",
        f"{V1}/webhooks/deliveries",
        summary="List webhook deliveries (dead letters: state=dead)",
        tag="webhooks",
        roles=ROLES,
        scope="webhooks:read",
        query=DeliveryFilter,
        response=DeliveryList,
    )
    async def list_deliveries(ctx: Ctx) -> DeliveryList:
        q: DeliveryFilter = ctx.query
        rows = await repo.list_deliveries(
            ctx.pool, state=q.state, subscription_id=q.subscription_id, limit=q.limit, after_id=q.after_id
        )
        return DeliveryList(items=[Delivery.model_validate({**dict(r), "event_id": str(r["event_id"])}) for r in rows])

    @reg.add(
        "POST",
        f"{V1}/webhooks/deliveries/replay",
        summary="Deliver dead letters again",
        tag="webhooks",
        roles=ROLES,
        scope="webhooks:write",
        body=ReplayIn,
        response=Replayed,
    )
    async def replay_deliveries(ctx: Ctx) -> Replayed:
        ids = sorted(set(ctx.body.delivery_ids))
        missing = await repo.missing_deliveries(ctx.pool, ids)
        if missing:
            raise NotFound(f"unknown deliveries: {missing}", details={"field": "delivery_ids", "missing": missing})
        actor = ctx.actor
        replayed = await ctx.deps.webhooks.replay(
            ids, actor=actor.name, actor_role=actor.role, source_ip=actor.source_ip
        )
        return Replayed(replayed=replayed)
