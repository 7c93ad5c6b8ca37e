"""Who supervises what. A supervisor supervises the campaigns of the agent row (their phone)
linked to their user, and through them those campaigns' agents, calls and contacts. The one
definition the REST API, the workspace and the dialing process all use."""

from __future__ import annotations

from .db import Executor


async def supervised_campaigns(db: Executor, user_id: int) -> frozenset[int]:
    """The campaigns of the agent row (phone) linked to the user (none without a phone)."""
    rows = await db.fetch(
        """SELECT ac.campaign_id FROM agent_campaigns ac JOIN agents a ON a.id = ac.agent_id
           WHERE a.user_id = $1""",
        user_id,
    )
    return frozenset(r["campaign_id"] for r in rows)


async def supervised_agents(db: Executor, user_id: int) -> list[int]:
    """The agents working on a campaign the user supervises, by id."""
    rows = await db.fetch(
        """SELECT DISTINCT x.agent_id FROM agent_campaigns x
           WHERE x.campaign_id IN (SELECT ac.campaign_id FROM agent_campaigns ac JOIN agents a ON a.id = ac.agent_id
                                   WHERE a.user_id = $1)
           ORDER BY 1""",
        user_id,
    )
    return [r["agent_id"] for r in rows]


async def supervises_agent(db: Executor, user_id: int, agent_id: int) -> bool:
    """Whether the agent works on a campaign the user supervises."""
    return bool(
        await db.fetchval(
            """SELECT EXISTS (SELECT 1 FROM agent_campaigns x JOIN agent_campaigns ac ON ac.campaign_id = x.campaign_id
                              JOIN agents a ON a.id = ac.agent_id
                              WHERE x.agent_id = $2 AND a.user_id = $1)""",
            user_id,
            agent_id,
        )
    )


async def supervises_contact(db: Executor, user_id: int, contact_id: int) -> bool:
    """Whether the contact's list is in a campaign the user supervises."""
    return bool(
        await db.fetchval(
            """SELECT EXISTS (SELECT 1 FROM contacts c JOIN campaign_lists cl ON cl.list_id = c.list_id
                              JOIN agent_campaigns ac ON ac.campaign_id = cl.campaign_id
                              JOIN agents a ON a.id = ac.agent_id
                              WHERE c.id = $2 AND a.user_id = $1)""",
            user_id,
            contact_id,
        )
    )


async def add_to_supervisor(db: Executor, user_id: int, campaign_id: int) -> bool:
    """Put a campaign among the user's supervised ones (their phone's); False without a phone."""
    done = await db.execute(
        """INSERT INTO agent_campaigns (agent_id, campaign_id) SELECT id, $2 FROM agents WHERE user_id = $1
           ON CONFLICT DO NOTHING""",
        user_id,
        campaign_id,
    )
    return done != "INSERT 0 0"


async def supervises_list(db: Executor, user_id: int, list_id: int) -> bool:
    """Whether the contact list is in a campaign the user supervises, or in no campaign (yet)
    (a list of no campaign is nobody's; True for a list that does not exist: the route says 404)."""
    return bool(
        await db.fetchval(
            """SELECT NOT EXISTS (SELECT 1 FROM campaign_lists WHERE list_id = $2)
                      OR EXISTS (SELECT 1 FROM campaign_lists cl
                                 JOIN agent_campaigns ac ON ac.campaign_id = cl.campaign_id
                                 JOIN agents a ON a.id = ac.agent_id
                                 WHERE cl.list_id = $2 AND a.user_id = $1)""",
            user_id,
            list_id,
        )
    )
