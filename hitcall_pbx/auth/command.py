"""`hitcall user add|passwd|disable|enable`: manage logins from the server's shell."""

from __future__ import annotations

import argparse
import getpass
import sys

import asyncpg

from ..errors import HitCallError, ValidationFailed
from ..settings import Settings
from .passwords import Passwords
from .roles import Actor, Role
from .service import AuthService


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("user", help="manage user logins (add, passwd, disable, enable)")
    sub = p.add_subparsers(dest="user_action", required=True, metavar="ACTION")

    add = sub.add_parser("add", help="create a user")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--no-password", action="store_true", help="no password login (integration users use API tokens)")

    pw = sub.add_parser("passwd", help="set a user's password (also unlocks it)")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    for action, text in (("disable", "disable a user and end its sessions"), ("enable", "enable a user")):
        s = sub.add_parser(action, help=text)
        s.add_argument("username")


def _cli_actor() -> Actor:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor(f"cli:{who}", "system")


def read_password(args: argparse.Namespace) -> str:
    """The new password: one line of standard input, or typed twice at a prompt."""
    if args.password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise ValidationFailed("the passwords do not match", details={"field": "password"})
    return first


async def run(settings: Settings, args: argparse.Namespace, *, passwords: Passwords | None = None) -> int:
    from ..store.db import Database

    try:
        password: str | None = None
        if args.user_action == "passwd" or (args.user_action == "add" and not args.no_password):
            password = read_password(args)
        async with Database(settings, max_size=2) as db:
            service = AuthService(db.pool, passwords=passwords or Passwords())
            actor = _cli_actor()
            if args.user_action == "add":
                row = await service.create_user(username=args.username, role=args.role, password=password, actor=actor)
                sys.stdout.write(f"created user {row['username']} (id {row['id']}, role {row['role']})\n")
                return 0
            user_id = await service.user_id_by_name(args.username)
            if args.user_action == "passwd":
                await service.update_user(user_id, password=password, actor=actor)
                sys.stdout.write(f"password of {args.username} changed\n")
            else:
                await service.update_user(user_id, disabled=args.user_action == "disable", actor=actor)
                sys.stdout.write(f"user {args.username} {args.user_action}d\n")
            return 0
    except HitCallError as exc:
        bad_input = exc.status in (404, 409, 422)
        sys.stderr.write(f"hitcall user {args.user_action}: {exc.message}\n")
        return 2 if bad_input else 1
    except asyncpg.UndefinedTableError:
        sys.stderr.write(f"hitcall user {args.user_action}: the database has no schema yet; run `hitcall migrate`\n")
        return 1
