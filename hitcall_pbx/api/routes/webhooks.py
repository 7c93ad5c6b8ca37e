"""CRM webhook subscriptions, the deliveries list and replay.

Each subscription has an owner: the integration user who made it (or one an admin names);
NULL = admin-owned. Integration users list, see, change, delete and replay only their
own; a subscription or delivery of someone else answers 404, exactly like one that does
not exist. Admins see all. A URL is checked against the address policy (no loopback,
private, link-local... targets: `hooks.targets`) when it is set, and again at every
delivery. URL and owner changes are audited with the old and the new value."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, Field

from ...auth import Role
from ...errors import NotFound, ValidationFailed
from ...hooks.events import EVENT_TYPES
from ..registry import V1, Ctx, Registry
from ..repos import webhooks as repo
from ..types import BIGINT_MAX, UNSET, Id, In, Out, Page, Patch

ROLES = frozenset({Role.ADMIN, Role.INTEGRATION})
if TYPE_CHECKING:
    EventType = str  # a Literal built at run time is no static type; the checker sees the names as str
else:
    EventType = Literal[(*EVENT_TYPES, "*")]
Url = Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s]+$", examples=["https://crm.example/hooks"])]


def _unique(values: list[str]) -> list[str]:
    return sorted(set(values))


EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=50), AfterValidator(_unique)]


def new_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


OWNER_DESCRIPTION = (
    "the integration user owning it (sees and changes only its own); null = admin-owned. Only admins may set it;"
    " an integration user's subscriptions are its own"
)


class SubscriptionIn(In):
    url: Url
    event_types: EventTypes = Field(description='event types to deliver; ["*"] = all')
    description: str | None = Field(default=None, max_length=500)
    active: bool = True
    owner_id: Id | None = Field(default=None, description=OWNER_DESCRIPTION)


class SubscriptionUpdate(Patch):
    url: Url = UNSET
    event_types: EventTypes = UNSET
    description: str | None = Field(default=None, max_length=500)
    active: bool = UNSET
    owner_id: Id | None = Field(default=None, description=OWNER_DESCRIPTION)


class Subscription(Out):
    id: int
    url: str
    event_types: list[str]
    description: str | None
    active: bool
    owner_id: int | None = Field(description="owning integration user; null = admin-owned")
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


def owner_scope(ctx: Ctx) -> int | None:
    """Whose subscriptions the caller may reach: an integration user its own, an admin all (None)."""
    return None if ctx.me.role is Role.ADMIN else ctx.me.user_id


async def _load(conn: Any, ctx: Ctx, subscription_id: int, *, for_update: bool = False) -> Any:
    """The caller's subscription or 404 (someone else's is not found either); `for_update`
    holds it until the change commits."""
    row = await repo.get_subscription(conn, subscription_id, owner=owner_scope(ctx), for_update=for_update)
    if row is None:
        raise NotFound(f"webhook subscription {subscription_id} not found")
    return row


async def _owner(conn: Any, ctx: Ctx, requested: int | None, *, sent: bool, current: int | None) -> int | None:
    """The owner a create or change leaves the subscription with: only an admin chooses one
    (an integration user, or null); an integration user's subscriptions are its own."""
    if ctx.me.role is not Role.ADMIN:
        if sent and requested != ctx.me.user_id:
            raise ValidationFailed(
                "only admins choose a subscription's owner; yours are your own", details={"field": "owner_id"}
            )
        return ctx.me.user_id
    if not sent:
        return current
    if requested is not None and not await repo.is_integration_user(conn, requested):
        raise ValidationFailed("owner_id must name an integration user", details={"field": "owner_id"})
    return requested


def audit_url(url: str) -> str:
    """The URL for the audit log: no password and no query values (they may be secrets)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = "&".join(f"{pair.split('=', 1)[0]}=***" if "=" in pair else pair for pair in parts.query.split("&") if pair)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


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
        rows = await repo.list_subscriptions(ctx.pool, owner=owner_scope(ctx))
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
        " webhook-timestamp, webhook-signature headers) with the returned secret. The URL may not point at"
        " loopback, private, link-local, multicast or metadata addresses (422 on url) unless the operator"
        " allows the network. An integration user owns what it creates.",
    )
    async def create_subscription(ctx: Ctx) -> SubscriptionCreated:
        b: SubscriptionIn = ctx.body
        await ctx.deps.webhook_targets.check_url(b.url)
        secret = new_secret()
        async with ctx.tx() as conn:
            owner = await _owner(conn, ctx, b.owner_id, sent="owner_id" in b.model_fields_set, current=None)
            sub_id = await repo.insert_subscription(conn, {**b.model_dump(), "secret": secret, "owner_id": owner})
            await ctx.audit(
                conn,
                "webhook_subscription.create",
                "webhook_subscription",
                sub_id,
                {"event_types": b.event_types, "url": audit_url(b.url), "owner_id": owner},
            )
            row = await _load(conn, ctx, sub_id)
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
        return Subscription.model_validate(dict(await _load(ctx.pool, ctx, ctx.params["subscription_id"])))

    @reg.add(
        "PATCH",
        f"{V1}/webhooks/subscriptions/{{subscription_id}}",
        summary="Change a webhook subscription",
        tag="webhooks",
        roles=ROLES,
        scope="webhooks:write",
        body=SubscriptionUpdate,
        response=Subscription,
        description="A new URL is checked like on create. Audited, a URL or owner change with the old and the"
        " new value.",
    )
    async def update_subscription(ctx: Ctx) -> Subscription:
        sub_id = ctx.params["subscription_id"]
        changes = ctx.body.changes()
        if "url" in changes:
            await ctx.deps.webhook_targets.check_url(changes["url"])
        async with ctx.tx() as conn:
            current = await _load(conn, ctx, sub_id, for_update=True)
            if "owner_id" in changes:
                changes["owner_id"] = await _owner(
                    conn, ctx, changes["owner_id"], sent=True, current=current["owner_id"]
                )
            await repo.update_subscription(conn, sub_id, changes)
            details: dict[str, Any] = {"fields": sorted(changes)}
            if "url" in changes and changes["url"] != current["url"]:
                details["url"] = {"old": audit_url(current["url"]), "new": audit_url(changes["url"])}
            if "owner_id" in changes and changes["owner_id"] != current["owner_id"]:
                details["owner_id"] = {"old": current["owner_id"], "new": changes["owner_id"]}
            await ctx.audit(conn, "webhook_subscription.update", "webhook_subscription", sub_id, details)
            row = await _load(conn, ctx, sub_id)
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
            current = await _load(conn, ctx, sub_id, for_update=True)
            await repo.delete_subscription(conn, sub_id)
            await ctx.audit(
                conn,
                "webhook_subscription.delete",
                "webhook_subscription",
                sub_id,
                {"url": audit_url(current["url"]), "owner_id": current["owner_id"]},
            )

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
            ctx.pool,
            owner=owner_scope(ctx),
            state=q.state,
            subscription_id=q.subscription_id,
            limit=q.limit,
            after_id=q.after_id,
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
        missing = await repo.missing_deliveries(ctx.pool, ids, owner=owner_scope(ctx))  # others' are unknown too
        if missing:
            raise NotFound(f"unknown deliveries: {missing}", details={"field": "delivery_ids", "missing": missing})
        actor = ctx.actor
        replayed = await ctx.deps.webhooks.replay(
            ids, actor=actor.name, actor_role=actor.role, source_ip=actor.source_ip
        )
        return Replayed(replayed=replayed)
