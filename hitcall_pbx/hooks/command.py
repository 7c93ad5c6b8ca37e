"""`hitcall webhooks`: delivery stats, dead-letter replay, new signing secrets."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from dataclasses import asdict
from datetime import datetime

import aiohttp

from ..errors import ValidationFailed
from ..settings import Settings
from ..store.db import Database
from .dispatcher import WebhookDispatcher
from .signing import generate_secret


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no time zone, e.g. 2025-03-01T00:00+02:00")
    return parsed


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("webhooks", help="webhook deliveries: stats, replay the dead letter, new secret")
    sub = p.add_subparsers(dest="webhooks_action", required=True, metavar="ACTION")
    sub.add_parser("stats", help="backlog, dead deliveries and oldest pending age as JSON")
    sub.add_parser("secret", help="print a new whsec_ signing secret")
    r = sub.add_parser("replay", help="move dead deliveries back to pending (all filters must match)")
    r.add_argument("--id", dest="ids", type=int, action="append", help="delivery id (repeatable)")
    r.add_argument("--subscription", type=int, help="subscription id")
    r.add_argument("--type", dest="event_type", help="event type, e.g. call.ended")
    r.add_argument("--since", type=_when, help="events created at or after (ISO 8601 with zone)")
    r.add_argument("--until", type=_when, help="events created before (ISO 8601 with zone)")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.webhooks_action == "secret":
        sys.stdout.write(generate_secret() + "\n")
        return 0
    if args.webhooks_action == "replay" and not (
        args.ids or args.subscription or args.event_type or args.since or args.until
    ):
        sys.stderr.write("hitcall webhooks replay: give --id, --subscription, --type, --since or --until\n")
        return 2
    async with Database(settings) as db:
        dispatcher = WebhookDispatcher(db.pool, aiohttp.ClientSession)
        if args.webhooks_action == "stats":
            sys.stdout.write(json.dumps(asdict(await dispatcher.stats())) + "\n")
            return 0
        try:
            replayed = await dispatcher.replay(
                actor=f"cli:{getpass.getuser()}",
                actor_role="system",  # the server's shell: every owner's deliveries
                delivery_ids=args.ids,
                subscription_id=args.subscription,
                event_type=args.event_type,
                since=args.since,
                until=args.until,
            )
        except ValidationFailed as exc:
            sys.stderr.write(f"hitcall webhooks replay: {exc.message}\n")
            return 2
    sys.stdout.write(json.dumps({"replayed": replayed}) + "\n")
    return 0
