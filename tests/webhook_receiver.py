"""A CRM's webhook endpoint for tests: verifies Standard Webhooks signatures, acknowledges
each webhook-id, counts repeats, and can fail (503), be down (port closed) or hold requests
(answer only once `hold` is set). It listens on 127.0.0.1: dispatchers that deliver to it
need `ALLOW_LOOPBACK`."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from ipaddress import ip_network

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from hitcall_pbx.core.netpolicy import AddressPolicy

# The receiver listens on loopback, which the product refuses as a webhook target: the
# tests allow it explicitly, as an operator allows a CRM on the LAN (HITCALL_WEBHOOK_ALLOW_NETS).
ALLOW_LOOPBACK = AddressPolicy(allow=(ip_network("127.0.0.0/8"), ip_network("::1/128")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    def __init__(self, secret: str, port: int | None = None) -> None:
        self.webhook = Webhook(secret)
        self.port = port or free_port()
        self.fail = False  # up, but every request answered 503
        self.requests = 0
        self.unacknowledged: Counter[str] = Counter()  # 503 answers per webhook-id
        self.accepted: list[dict] = []  # verified and acknowledged, in arrival order
        self.duplicates = 0  # an already acknowledged webhook-id delivered again
        self.bad_signatures = 0
        self.hosts: list[str] = []  # the Host header of each request
        self.arrived: list[str] = []  # the webhook-id of each request, as it arrives
        self.senders: Counter[str] = Counter()  # requests by their X-Sender header (set by a test's session)
        self.hold: asyncio.Event | None = None  # requests wait for it before being answered
        self._seen: set[str] = set()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.hosts.append(request.headers.get("Host", ""))
        self.arrived.append(request.headers.get("webhook-id", ""))
        self.senders[request.headers.get("X-Sender", "")] += 1
        body = await request.read()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail:
            self.unacknowledged[request.headers.get("webhook-id", "")] += 1
            return web.Response(status=503)
        try:
            event = self.webhook.verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=400)
        if request.headers["webhook-id"] != event["id"]:
            self.bad_signatures += 1
            return web.Response(status=400)
        if event["id"] in self._seen:
            self.duplicates += 1
        else:
            self._seen.add(event["id"])
            self.accepted.append(event)
        return web.Response(status=204)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def sequence(self, subject: str) -> list[int]:
        return [e["data"]["seq"] for e in self.accepted if e["subject"] == subject]
