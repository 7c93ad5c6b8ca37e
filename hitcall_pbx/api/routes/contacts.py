"""Contact lists and contacts: CRUD and bulk import (JSON or CSV), all or nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from ...auth import Role
from ...errors import Conflict, ValidationFailed
from ..imports import ContactIn, RowError, ValidRow, parse_csv, validate_rows
from ..registry import CSV_LIMIT, V1, Ctx, Registry, found
from ..repos import campaigns as campaigns_repo
from ..repos import contacts as repo
from ..types import BIGINT_MAX, UNSET, Email, Id, In, Out, Page, Patch, Phone, Query, Text, TimeZone
from .campaigns import check_campaign

ROLES = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.INTEGRATION})
MAX_JSON_ROWS = 10_000
OnConflict = Literal["error", "skip", "update"]
Status = Literal["new", "retry", "in_progress", "callback", "done", "failed", "dnc"]


class ContactListIn(In):
    name: Text
    description: str | None = Field(default=None, max_length=2000)
    campaign_id: Id | None = Field(default=None, description="the campaign that dials this list")


class ContactListUpdate(Patch):
    name: Text = UNSET
    description: str | None = Field(default=None, max_length=2000)
    campaign_id: Id | None = Field(default=None, description="null detaches the list from its campaign")


class ContactList(Out):
    id: int
    name: str
    description: str | None
    campaign_id: int | None
    contacts: int
    created_at: datetime
    updated_at: datetime


class ContactListList(Out):
    items: list[ContactList]


class ListFilter(Query):
    campaign_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX)


class Contact(Out):
    id: int
    list_id: int
    external_id: str | None
    phone: str = Field(description="E.164")
    name: str | None
    title: str | None
    email: str | None
    organisation: str | None
    timezone: str | None
    marketing_permission: bool
    marketing_prohibited: bool
    processing_restricted: bool
    attempts: int
    next_attempt_at: datetime | None
    status: Status
    last_outcome: str | None
    callback_at: datetime | None
    extra: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ContactPage(Out):
    items: list[Contact]


class ContactFilter(Page):
    status: Status | None = None


class ContactSearch(In):
    """A search by number goes in a request body: a number in an address ends up in logs."""

    phone: Phone | None = Field(default=None, description="exact number (any form)")
    status: Status | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    after_id: int | None = Field(default=None, ge=0, le=BIGINT_MAX, description="return items with id > after_id")


NUMBER_IN_ADDRESS = "a number is not sent in the address: POST it to {path}/search as phone"


class ContactUpdate(Patch):
    phone: Phone = UNSET
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    title: str | None = Field(default=None, max_length=200)
    email: Email | None = None
    organisation: str | None = Field(default=None, max_length=200)
    timezone: TimeZone | None = None
    marketing_permission: bool = UNSET
    marketing_prohibited: bool = UNSET
    extra: dict[str, Any] = UNSET


_ROWS_SCHEMA = {"type": "array", "maxItems": MAX_JSON_ROWS, "items": {"$ref": "#/components/schemas/ContactIn"}}


class ContactImport(In):
    contacts: Annotated[list[dict[str, Any]], Field(max_length=MAX_JSON_ROWS), WithJsonSchema(_ROWS_SCHEMA)]
    dry_run: bool = Field(default=False, description="validate and report only; nothing is written")
    on_conflict: OnConflict = Field(
        default="error", description="a number or external_id already in the list: error, skip or update it"
    )


class CsvImportOptions(Query):
    dry_run: bool = False
    on_conflict: OnConflict = "error"


class ImportRowError(Out):
    row: int = Field(description="item number (JSON, from 1) or line number (CSV, header = 1)")
    field: str
    message: str


class ImportReport(Out):
    dry_run: bool
    rows: int
    imported: int = Field(description="new contacts (would be, on a dry run)")
    updated: int
    skipped: int
    errors: list[ImportRowError] = Field(description="non-empty = nothing was imported")


def _contact(row: Any) -> Contact:
    return Contact.model_validate({**dict(row), "phone": row["phone_e164"]})


def _contact_db(data: dict[str, Any]) -> dict[str, Any]:
    if "phone" in data:
        data["phone_e164"] = data.pop("phone")
    return data


async def _load_list(conn: Any, list_id: int, *, for_update: bool = False) -> Any:
    return found(await repo.get_list(conn, list_id, for_update=for_update), "contact list", "list_id", list_id)


async def _load_contact(conn: Any, contact_id: int, *, for_update: bool = False) -> Any:
    row = await repo.get_contact(conn, contact_id, for_update=for_update)
    return found(row, "contact", "contact_id", contact_id)


async def _import(
    ctx: Ctx,
    list_id: int,
    valid: list[ValidRow],
    errors: list[RowError],
    total: int,
    dry_run: bool,
    on_conflict: str,
    fmt: str,
) -> ImportReport:
    """Write the valid rows in one transaction unless any row fails (or on a dry run)."""
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    skipped = 0
    errors = list(errors)
    async with ctx.tx() as conn:
        await _load_list(conn, list_id, for_update=True)
        existing = await repo.existing_keys(
            conn,
            list_id,
            [v.contact.phone for v in valid],
            [v.contact.external_id for v in valid if v.contact.external_id is not None],
        )
        by_phone = {r["phone_e164"]: r["id"] for r in existing}
        by_ext = {r["external_id"]: r["id"] for r in existing if r["external_id"] is not None}
        for v in valid:
            c = v.contact
            data = {**c.model_dump(exclude={"phone"}), "phone_e164": c.phone}
            match = by_phone.get(c.phone)
            ext_owner = by_ext.get(c.external_id) if c.external_id is not None else None
            if match is None and ext_owner is None:
                inserts.append(data)
            elif on_conflict == "skip":
                skipped += 1
            elif on_conflict == "update" and ext_owner in (None, match) and match is not None:
                updates.append({**data, "id": match})
            else:
                field = "phone" if match is not None else "external_id"
                reason = (
                    "is already in the list" if on_conflict == "error" else "belongs to another contact in the list"
                )
                errors.append(RowError(v.row, field, f"{field} {reason}"))
        errors.sort(key=lambda e: e.row)
        report = ImportReport(
            dry_run=dry_run,
            rows=total,
            imported=len(inserts),
            updated=len(updates),
            skipped=skipped,
            errors=[ImportRowError(row=e.row, field=e.field, message=e.message) for e in errors],
        )
        if errors and not dry_run:
            raise ValidationFailed(
                f"{len({e.row for e in errors})} of {total} rows are invalid; nothing was imported",
                details={"field": "contacts", "report": report.model_dump()},
                code="import_rejected",
            )
        if dry_run:
            return report
        await repo.insert_contacts(conn, list_id, inserts)
        await repo.update_contacts(conn, updates)
        await ctx.audit(
            conn,
            "contacts.import",
            "contact_list",
            list_id,
            {
                "format": fmt,
                "rows": total,
                "imported": len(inserts),
                "updated": len(updates),
                "skipped": skipped,
            },
        )
    return report


async def _contact_page(
    ctx: Ctx, *, status: str | None, phone: str | None, limit: int, after_id: int | None
) -> ContactPage:
    async with ctx.pool.acquire() as conn:
        await _load_list(conn, ctx.params["list_id"])
        rows = await repo.list_contacts(
            conn, ctx.params["list_id"], limit=limit, after_id=after_id, status=status, phone=phone
        )
        if rows:  # ids and a count only: never the number searched for
            await ctx.audit(conn, "contact.list", "contact_list", ctx.params["list_id"], {"contacts": len(rows)})
    return ContactPage(items=[_contact(r) for r in rows])


def register(reg: Registry) -> None:
    @reg.add(
        "GET",
        f"{V1}/lists",
        summary="List contact lists",
        tag="contacts",
        roles=ROLES,
        scope="contacts:read",
        query=ListFilter,
        response=ContactListList,
    )
    async def list_lists(ctx: Ctx) -> ContactListList:
        rows = await repo.list_lists(ctx.pool, ctx.query.campaign_id)
        return ContactListList(items=[ContactList.model_validate(dict(r)) for r in rows])

    @reg.add(
        "POST",
        f"{V1}/lists",
        summary="Create a contact list",
        tag="contacts",
        roles=ROLES,
        scope="contacts:write",
        body=ContactListIn,
        response=ContactList,
        status=201,
    )
    async def create_list(ctx: Ctx) -> ContactList:
        b: ContactListIn = ctx.body
        async with ctx.tx() as conn:
            await check_campaign(conn, b.campaign_id)
            list_id = await repo.insert_list(conn, b.model_dump(exclude={"campaign_id"}))
            await repo.assign_list(conn, list_id, b.campaign_id)
            await ctx.audit(conn, "contact_list.create", "contact_list", list_id, {"campaign_id": b.campaign_id})
            row = await _load_list(conn, list_id)
        if b.campaign_id is not None:
            await ctx.notify_dialer(ctx.deps.dialer.campaign_changed(b.campaign_id))
        return ContactList.model_validate(dict(row))

    @reg.add(
        "GET",
        f"{V1}/lists/{{list_id}}",
        summary="Get a contact list",
        tag="contacts",
        roles=ROLES,
        scope="contacts:read",
        response=ContactList,
    )
    async def get_list(ctx: Ctx) -> ContactList:
        return ContactList.model_validate(dict(await _load_list(ctx.pool, ctx.params["list_id"])))

    @reg.add(
        "PATCH",
        f"{V1}/lists/{{list_id}}",
        summary="Rename a list or move it to another campaign",
        tag="contacts",
        roles=ROLES,
        scope="contacts:write",
        body=ContactListUpdate,
        response=ContactList,
    )
    async def update_list(ctx: Ctx) -> ContactList:
        list_id = ctx.params["list_id"]
        changes = ctx.body.changes()
        async with ctx.tx() as conn:
            before = await _load_list(conn, list_id, for_update=True)
            if "campaign_id" in changes:
                campaign_id = changes.pop("campaign_id")
                await check_campaign(conn, campaign_id)
                await repo.assign_list(conn, list_id, campaign_id)
                changes_audit = ["campaign_id", *changes]
            else:
                changes_audit = list(changes)
            await repo.update_list(conn, list_id, changes)
            await ctx.audit(conn, "contact_list.update", "contact_list", list_id, {"fields": sorted(changes_audit)})
            row = await _load_list(conn, list_id)
        for campaign_id in {before["campaign_id"], row["campaign_id"]} - {None}:
            await ctx.notify_dialer(ctx.deps.dialer.campaign_changed(campaign_id))
        return ContactList.model_validate(dict(row))

    @reg.add(
        "DELETE",
        f"{V1}/lists/{{list_id}}",
        summary="Delete a contact list and its contacts",
        tag="contacts",
        roles=ROLES,
        scope="contacts:write",
        description="Refused (409) while the list belongs to a running campaign.",
    )
    async def delete_list(ctx: Ctx) -> None:
        list_id = ctx.params["list_id"]
        async with ctx.tx() as conn:
            row = await _load_list(conn, list_id, for_update=True)
            if row["campaign_id"] is not None:
                campaign = await campaigns_repo.get(conn, row["campaign_id"])
                if campaign is not None and campaign["state"] == "running":
                    raise Conflict(
                        "the list's campaign is running; pause or stop it first",
                        details={"campaign_id": row["campaign_id"]},
                    )
            await repo.delete_list(conn, list_id)
            await ctx.audit(conn, "contact_list.delete", "contact_list", list_id, {"contacts": row["contacts"]})
        if row["campaign_id"] is not None:
            await ctx.notify_dialer(ctx.deps.dialer.campaign_changed(row["campaign_id"]))

    @reg.add(
        "GET",
        f"{V1}/lists/{{list_id}}/contacts",
        summary="List a list's contacts",
        tag="contacts",
        roles=ROLES,
        scope="contacts:read",
        query=ContactFilter,
        response=ContactPage,
    )
    async def list_contacts(ctx: Ctx) -> ContactPage:
        if "phone" in ctx.request.query:
            raise ValidationFailed(NUMBER_IN_ADDRESS.format(path=ctx.request.path), details={"field": "phone"})
        q: ContactFilter = ctx.query
        return await _contact_page(ctx, status=q.status, phone=None, limit=q.limit, after_id=q.after_id)

    @reg.add(
        "POST",
        f"{V1}/lists/{{list_id}}/contacts/search",
        summary="Find a list's contacts by number",
        tag="contacts",
        roles=ROLES,
        scope="contacts:read",
        body=ContactSearch,
        response=ContactPage,
        status=200,
        description="As GET …/contacts, with the number in the body (never in the address). Audited.",
    )
    async def search_contacts(ctx: Ctx) -> ContactPage:
        b: ContactSearch = ctx.body
        return await _contact_page(ctx, status=b.status, phone=b.phone, limit=b.limit, after_id=b.after_id)

    @reg.add(
        "POST",
        f"{V1}/lists/{{list_id}}/contacts",
        summary="Add one contact",
        tag="contacts",
        roles=ROLES,
        scope="contacts:write",
        body=ContactIn,
        response=Contact,
        status=201,
    )
    async def create_contact(ctx: Ctx) -> Contact:
        list_id = ctx.params["list_id"]
        async with ctx.tx() as conn:
            await _load_list(conn, list_id)
            contact_id = await repo.insert_contact(conn, {**_contact_db(ctx.body.model_dump()), "list_id": list_id})
            await ctx.audit(conn, "contact.create", "contact", contact_id, {"list_id": list_id})
            row = await _load_contact(conn, contact_id)
        return _contact(row)

    @reg.add(
        "POST",
        f"{V1}/lists/{{list_id}}/contacts/import",
        summary="Import contacts from JSON",
        tag="contacts",
        roles=ROLES,
        scope="contacts:write",
        body=ContactImport,
        response=ImportReport,
        description="All or nothing: any invalid row rejects the whole import (422, details.report lists"
        " each row's errors). dry_run reports without writing.",
    )
    async def import_contacts(ctx: Ctx) -> ImportReport:
        b: ContactImport = ctx.body
        valid, errors = validate_rows(enumerate(b.contacts, start=1))
        return await _import(
            ctx, ctx.params["list_id"], valid, errors, len(b.contacts), b.dry_run, b.on_conflict, "json"
        )

    @reg.add(
        "POST",
        f"{V1}/lists/{{list_id}}/contacts/import.csv",
        summary="Import contacts from CSV",
        tag="contacts",
        roles=ROLES,
        scope="contacts:write",
        body_media="text/csv",
        max_body=CSV_LIMIT,
        query=CsvImportOptions,
        response=ImportReport,
        description="UTF-8 CSV, comma or semicolon separated, with a header line: phone (required),"
        " external_id, name, title, email, organisation, timezone, marketing_permission; other columns go to"
        " extra. Row numbers in the report are line numbers. All or nothing, like the JSON import.",
    )
    async def import_contacts_csv(ctx: Ctx) -> ImportReport:
        q: CsvImportOptions = ctx.query
        rows, unreadable = parse_csv(ctx.body)
        valid, errors = validate_rows(rows)
        total = len(rows) + len(unreadable)
        return await _import(
            ctx, ctx.params["list_id"], valid, unreadable + errors, total, q.dry_run, q.on_conflict, "csv"
        )

    @reg.add(
        "GET",
        f"{V1}/contacts/{{contact_id}}",
        summary="Get a contact",
        tag="contacts",
        roles=ROLES,
        scope="contacts:read",
        response=Contact,
    )
    async def get_contact(ctx: Ctx) -> Contact:
        row = await _load_contact(ctx.pool, ctx.params["contact_id"])
        await ctx.audit(ctx.pool, "contact.view", "contact", row["id"])
        return _contact(row)

    @reg.add(
        "PATCH",
        f"{V1}/contacts/{{contact_id}}",
        summary="Change a contact",
        tag="contacts",
        roles=ROLES,
        scope="contacts:write",
        body=ContactUpdate,
        response=Contact,
    )
    async def update_contact(ctx: Ctx) -> Contact:
        contact_id = ctx.params["contact_id"]
        changes = _contact_db(ctx.body.changes())
        async with ctx.tx() as conn:
            await _load_contact(conn, contact_id, for_update=True)
            await repo.update_contact(conn, contact_id, changes)
            await ctx.audit(
                conn,
                "contact.update",
                "contact",
                contact_id,
                {"fields": sorted("phone" if c == "phone_e164" else c for c in changes)},
            )
            row = await _load_contact(conn, contact_id)
        return _contact(row)

    @reg.add(
        "DELETE",
        f"{V1}/contacts/{{contact_id}}",
        summary="Delete a contact",
        tag="contacts",
        roles=ROLES,
        scope="contacts:write",
        description="Its call history stays, without the link to the contact. To erase a person use"
        " POST /api/v1/subjects/erase.",
    )
    async def delete_contact(ctx: Ctx) -> None:
        contact_id = ctx.params["contact_id"]
        async with ctx.tx() as conn:
            row = await _load_contact(conn, contact_id, for_update=True)
            if row["status"] == "in_progress":
                raise Conflict("the contact is being called right now", details={"status": "in_progress"})
            await repo.delete_contact(conn, contact_id)
            await ctx.audit(conn, "contact.delete", "contact", contact_id, {"list_id": row["list_id"]})
