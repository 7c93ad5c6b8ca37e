"""Creating campaigns, contact lists, contacts and agents directly in Postgres.

Used by the demo and the end-to-end tests (operators use the REST API, which
validates input; these helpers trust their callers).
"""

from __future__ import annotations

from datetime import time
from typing import Any

from ..store.db import Executor

# Campaign fields for a calling window open all day, every day (for `create_campaign(..., **ALL_DAY)`).
ALL_DAY: dict[str, Any] = {
    "window_start": time(0, 0),
    "window_end": time(23, 59, 59),
    "window_days": [1, 2, 3, 4, 5, 6, 7],
}


async def create_campaign(
    conn: Executor,
    name: str,
    *,
    mode: str = "progressive",
    state: str = "draft",
    numbers: list[str] | None = None,
    **fields: Any,
) -> tuple[int, int]:
    """A campaign with its own contact list; returns (campaign_id, list_id)."""
    values: dict[str, Any] = {
        "name": name,
        "mode": mode,
        "state": "draft",
        "caller_id": "+358201234567",
        "info_message_sound": "sound:hello-world",
        "company_name": "HitCall Demo Oy",
        "callback_number": "+358201234567",
    }
    values.update(fields)
    cols = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    campaign_id = await conn.fetchval(
        f"INSERT INTO campaigns ({cols}) VALUES ({params}) RETURNING id", *values.values()
    )
    list_id = await conn.fetchval("INSERT INTO contact_lists (name) VALUES ($1) RETURNING id", f"{name} contacts")
    await conn.execute("INSERT INTO campaign_lists (campaign_id, list_id) VALUES ($1, $2)", campaign_id, list_id)
    if numbers:
        await add_contacts(conn, list_id, numbers)
    if state != "draft":
        await conn.execute("UPDATE campaigns SET state = $2 WHERE id = $1", campaign_id, state)
    return campaign_id, list_id


async def add_contacts(conn: Executor, list_id: int, numbers: list[str], names: list[str] | None = None) -> None:
    rows = [(list_id, n, (names[i] if names else f"Customer {i + 1}")) for i, n in enumerate(numbers)]
    await conn.executemany(
        "INSERT INTO contacts (list_id, phone_e164, name, marketing_permission) VALUES ($1, $2, $3, true)", rows
    )


async def create_agent(
    conn: Executor,
    number: str,
    endpoint: str,
    campaign_ids: list[int],
    *,
    name: str | None = None,
    pin_hash: str | None = None,
) -> int:
    agent_id = await conn.fetchval(
        "INSERT INTO agents (number, name, endpoint, pin_hash) VALUES ($1, $2, $3, $4) RETURNING id",
        number,
        name or f"Agent {number}",
        endpoint,
        pin_hash,
    )
    for cid in campaign_ids:
        await conn.execute("INSERT INTO agent_campaigns (agent_id, campaign_id) VALUES ($1, $2)", agent_id, cid)
    return agent_id


def sim_numbers(behaviour: int, count: int, start: int = 1) -> list[str]:
    """Numbers the sandbox's simulated customers answer to (+35840 B SSSSSS, B = behaviour)."""
    if not 0 <= behaviour <= 9:
        raise ValueError("behaviour digit 0..9")
    return [f"+35840{behaviour}{n:06d}" for n in range(start, start + count)]


async def ensure_agent(conn: Executor, number: str, endpoint: str, campaign_ids: list[int]) -> int:
    """The agent on this endpoint (created if missing), assigned to the campaigns."""
    agent_id = await conn.fetchval("SELECT id FROM agents WHERE endpoint = $1", endpoint)
    if agent_id is None:
        return await create_agent(conn, number, endpoint, campaign_ids)
    await conn.execute("UPDATE agents SET disabled = false WHERE id = $1", agent_id)
    for cid in campaign_ids:
        await conn.execute(
            "INSERT INTO agent_campaigns (agent_id, campaign_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", agent_id, cid
        )
    return agent_id
