"""Contact lists and contacts, including the bulk import."""

from __future__ import annotations

from typing import Any

import asyncpg

from ...store.db import Connection
from . import sql
from .sql import Conn

LIST_COLUMNS = ("name", "description")
CONTACT_COLUMNS = (
    "list_id", "external_id", "phone_e164", "name", "title", "email", "organisation", "timezone",
    "marketing_permission", "marketing_prohibited", "extra",
)  # fmt: skip

_LIST_SELECT = """SELECT l.*, cl.campaign_id, (SELECT count(*) FROM contacts c WHERE c.list_id = l.id) AS contacts
                  FROM contact_lists l LEFT JOIN campaign_lists cl ON cl.list_id = l.id"""


async def list_lists(conn: Conn, campaign_id: int | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"{_LIST_SELECT} WHERE $1::bigint IS NULL OR cl.campaign_id = $1 ORDER BY l.id", campaign_id
    )


async def get_list(conn: Conn, list_id: int, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE OF l" if for_update else ""
    return await conn.fetchrow(f"{_LIST_SELECT} WHERE l.id = $1{lock}", list_id)


async def insert_list(conn: Conn, data: dict[str, Any]) -> int:
    return await sql.insert(conn, "contact_lists", data, LIST_COLUMNS)


async def update_list(conn: Conn, list_id: int, data: dict[str, Any]) -> bool:
    return await sql.update(conn, "contact_lists", list_id, data, LIST_COLUMNS)


async def delete_list(conn: Conn, list_id: int) -> bool:
    return await sql.delete(conn, "contact_lists", list_id)


async def assign_list(conn: Conn, list_id: int, campaign_id: int | None) -> None:
    """Attach the list to a campaign (or to none)."""
    await conn.execute("DELETE FROM campaign_lists WHERE list_id = $1", list_id)
    if campaign_id is not None:
        await conn.execute("INSERT INTO campaign_lists (campaign_id, list_id) VALUES ($1, $2)", campaign_id, list_id)


async def list_contacts(
    conn: Conn, list_id: int, *, limit: int, after_id: int | None, status: str | None, phone: str | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT * FROM contacts WHERE list_id = $1 AND id > COALESCE($2, 0)
             AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR phone_e164 = $4)
           ORDER BY id LIMIT $5""",
        list_id,
        after_id,
        status,
        phone,
        limit,
    )


async def get_contact(conn: Conn, contact_id: int, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT * FROM contacts WHERE id = $1{lock}", contact_id)


async def insert_contact(conn: Conn, data: dict[str, Any]) -> int:
    return await sql.insert(conn, "contacts", data, CONTACT_COLUMNS)


async def update_contact(conn: Conn, contact_id: int, data: dict[str, Any]) -> bool:
    return await sql.update(conn, "contacts", contact_id, data, CONTACT_COLUMNS)


async def delete_contact(conn: Conn, contact_id: int) -> bool:
    return await sql.delete(conn, "contacts", contact_id)


async def existing_keys(conn: Conn, list_id: int, phones: list[str], external_ids: list[str]) -> list[asyncpg.Record]:
    """Contacts of the list that share a number or an external id with the import."""
    return await conn.fetch(
        """SELECT id, phone_e164, external_id FROM contacts
           WHERE list_id = $1 AND (phone_e164 = ANY($2::text[]) OR external_id = ANY($3::text[]))""",
        list_id,
        phones,
        external_ids,
    )


_IMPORT_FIELDS = ("external_id", "name", "title", "email", "organisation", "timezone", "marketing_permission", "extra")
_IMPORT_TYPES = ("text", "text", "text", "text", "text", "text", "boolean", "jsonb")


async def insert_contacts(conn: Connection, list_id: int, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    cols = ("phone_e164", *_IMPORT_FIELDS)
    types = ("text", *_IMPORT_TYPES)
    arrays = [[r[c] for r in rows] for c in cols]
    unnest = ", ".join(f"${i + 2}::{t}[]" for i, t in enumerate(types))
    status = await conn.execute(
        f"INSERT INTO contacts (list_id, {', '.join(cols)}) SELECT $1, * FROM unnest({unnest})",
        list_id,
        *arrays,
    )
    return int(status.split()[-1])


async def update_contacts(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Overwrite imported fields of existing contacts (by id). A contact that objected to
    marketing keeps its prohibition and gets no permission."""
    if not rows:
        return 0
    cols = ("id", *_IMPORT_FIELDS)
    types = ("bigint", *_IMPORT_TYPES)
    arrays = [[r[c] for r in rows] for c in cols]
    unnest = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    sets = ", ".join(
        f"{c} = u.{c}"
        if c != "marketing_permission"
        else "marketing_permission = u.marketing_permission AND NOT c.marketing_prohibited"
        for c in _IMPORT_FIELDS
    )
    status = await conn.execute(
        f"UPDATE contacts c SET {sets} FROM unnest({unnest}) AS u({', '.join(cols)}) WHERE c.id = u.id",
        *arrays,
    )
    return int(status.split()[-1])
