"""Webhook targets cannot reach inside (SSRF): loopback, private, link-local, multicast,
unspecified, shared (CGNAT), metadata and IPv4-mapped forms of them are refused when a
subscription is created or changed (422 naming url, nothing written) and again when a
delivery connects (names resolved and every address checked, the connection made to the
checked address, no redirects); the operator's allow-list admits exceptions; delivery
errors readable through the API are generic."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from hitcall_pbx.auth import Role
from hitcall_pbx.core.netpolicy import AddressPolicy
from hitcall_pbx.hooks import WebhookDispatcher, generate_secret
from hitcall_pbx.hooks.targets import WebhookTargets, system_resolve
from tests.integration.test_api_support import PUBLIC_ADDRESS, Api, api  # noqa: F401  (fixture)
from tests.webhook_receiver import ALLOW_LOOPBACK, Receiver, free_port

GENERIC_ERRORS = {"connection failed", "timeout", "address not allowed"}

# names and what they resolve to, for the API's check and for the dispatcher's resolver
DNS: dict[str, list[str]] = {
    "crm.example": [str(PUBLIC_ADDRESS)],
    "evil.example": ["127.0.0.1"],  # a public-looking name pointing at loopback
    "evil6.example": ["::1"],
    "meta.example": ["169.254.169.254"],
    "rebind.example": [str(PUBLIC_ADDRESS), "10.0.0.7"],  # one good address, one inside
    "crm.lan.example": ["127.0.0.1"],  # the operator's CRM "on the LAN" (loopback in the test)
}

REFUSED_URLS = [
    "http://127.0.0.1:5432/",
    "http://127.0.0.2/",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.1.1/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://100.100.100.200/",
    "http://224.0.0.1/",
    "http://0.0.0.0:8080/",
    "http://[::1]:8088/ari",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]:5432/",
    "http://[::ffff:169.254.169.254]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/",
    "http://[ff02::1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::1]/",
    "http://localhost/",
    "http://LOCALHOST.:8088/",
    "http://api.localhost/",
    "http://127.1/",
    "http://2130706433/",
    "https://evil.example/hooks",
    "https://evil6.example/hooks",
    "https://meta.example/",
    "https://rebind.example/",
]


async def fake_dns(host: str, port: int) -> list[IPv4Address | IPv6Address]:
    if host.lower() in DNS:
        return [ip_address(a) for a in DNS[host.lower()]]
    return await system_resolve(host, port)  # numeric forms like 127.1 resolve without a network


class FakeResolver(AbstractResolver):
    """aiohttp's resolver interface over `DNS` (what an attacker's DNS would answer)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host.lower() not in DNS:
            raise OSError(f"{host}: no such name")
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in DNS[host.lower()]
        ]

    async def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- API


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_create_refuses_internal_targets(api: Api, url: str) -> None:
    api.deps.webhook_targets = WebhookTargets(resolve=fake_dns)
    for role in (Role.INTEGRATION, Role.ADMIN):
        headers = await api.as_role(role)
        resp = await api.client.post(
            "/api/v1/webhooks/subscriptions", json={"url": url, "event_types": ["*"]}, headers=headers
        )
        body = await resp.json()
        assert resp.status == 422, (url, body)
        assert body["error"] == "address_not_allowed"
        assert [f["field"] for f in body["details"]["fields"]] == ["url"]
        assert "127.0.0.1" not in body["message"] and "resolves" not in body["message"]  # nothing learnt
    assert await api.pool.fetchval("SELECT count(*) FROM webhook_subscriptions") == 0
    assert await api.pool.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'webhook%'") == 0


async def test_change_refuses_internal_targets_and_allow_list_admits_exceptions(api: Api) -> None:
    api.deps.webhook_targets = WebhookTargets(resolve=fake_dns)
    intg = await api.as_role(Role.INTEGRATION)
    resp = await api.client.post(
        "/api/v1/webhooks/subscriptions",
        json={"url": "https://crm.example/hooks", "event_types": ["*"]},
        headers=intg,
    )
    assert resp.status == 201, await resp.text()
    sub = await resp.json()
    for url in ("http://10.20.1.5/hooks", "https://evil.example/x", "http://[::ffff:10.0.0.1]/"):
        resp = await api.client.patch(f"/api/v1/webhooks/subscriptions/{sub['id']}", json={"url": url}, headers=intg)
        assert resp.status == 422 and (await resp.json())["details"]["fields"][0]["field"] == "url"
    assert await api.pool.fetchval("SELECT url FROM webhook_subscriptions") == "https://crm.example/hooks"
    assert await api.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'webhook_subscription.update'") == 0

    # the operator allows the CRM's LAN (HITCALL_WEBHOOK_ALLOW_NETS=10.20.0.0/16): that network only
    api.deps.webhook_targets = WebhookTargets(AddressPolicy(allow=(ip_network("10.20.0.0/16"),)), resolve=fake_dns)
    resp = await api.client.patch(
        f"/api/v1/webhooks/subscriptions/{sub['id']}", json={"url": "http://10.20.1.5/hooks"}, headers=intg
    )
    assert resp.status == 200
    for url in ("http://10.30.0.1/", "http://127.0.0.1/", "http://169.254.169.254/"):
        resp = await api.client.patch(f"/api/v1/webhooks/subscriptions/{sub['id']}", json={"url": url}, headers=intg)
        assert resp.status == 422, url


async def test_a_name_that_does_not_resolve_yet_is_accepted(api: Api) -> None:
    async def nxdomain(host: str, port: int) -> list[IPv4Address | IPv6Address]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    api.deps.webhook_targets = WebhookTargets(resolve=nxdomain)
    resp = await api.client.post(
        "/api/v1/webhooks/subscriptions",
        json={"url": "https://hooks.crm-not-live-yet.example/", "event_types": ["*"]},
        headers=await api.as_role(Role.INTEGRATION),
    )
    assert resp.status == 201  # checked again at every delivery


# ------------------------------------------------------------------------ delivery


async def _subscribe(pool, url: str) -> tuple[int, str]:
    """A subscription with one delivery of its own waiting (already fanned out to it alone)."""
    secret = generate_secret()
    sid = await pool.fetchval(
        "INSERT INTO webhook_subscriptions (url, secret, event_types) VALUES ($1, $2, '{*}') RETURNING id",
        url,
        secret,
    )
    outbox = await pool.fetchval(
        "INSERT INTO webhook_outbox (event_type, subject, payload, dispatched_at)"
        " VALUES ('call.ended', $1, $2, now()) RETURNING id",
        f"call:{sid}",
        {"n": sid},
    )
    await pool.execute(
        "INSERT INTO webhook_deliveries (outbox_id, subscription_id, next_attempt_at) VALUES ($1, $2, now())",
        outbox,
        sid,
    )
    return sid, secret


async def _deliver(db, policy: AddressPolicy | None = None, resolver=None, **kw) -> None:
    d = WebhookDispatcher(db, aiohttp.ClientSession, address_policy=policy, resolver=resolver, **kw)
    try:
        await d.run_once()
    finally:
        await d.close()


async def _outcome(db, sid: int) -> tuple[str, int | None, str | None]:
    row = await db.fetchrow(
        "SELECT state, last_status, last_error FROM webhook_deliveries WHERE subscription_id = $1", sid
    )
    return row["state"], row["last_status"], row["last_error"]


class Counter:
    """A plain HTTP server that counts what reaches it (an internal service)."""

    def __init__(self, host: str, status: int = 204, location: str | None = None, delay: float = 0) -> None:
        self.host, self.port, self.hits = host, free_port(), 0
        self.status, self.location, self.delay = status, location, delay
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        await asyncio.sleep(self.delay)
        headers = {"Location": self.location} if self.location else None
        return web.Response(status=self.status, headers=headers)

    async def __aenter__(self) -> Counter:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_delivery_refuses_internal_literals_without_connecting(db) -> None:
    """Rows written before the check existed (or straight into the database) are refused
    at connect time: IPv4 and IPv6 loopback, IPv4-mapped, never a byte sent."""
    async with Counter("127.0.0.1") as v4, Counter("::1") as v6:
        urls = [
            f"http://127.0.0.1:{v4.port}/hooks",
            f"http://[::ffff:127.0.0.1]:{v4.port}/hooks",
            f"http://[::1]:{v6.port}/hooks",
            f"http://localhost:{v4.port}/hooks",
            f"http://0.0.0.0:{v4.port}/hooks",
        ]
        sids = [(await _subscribe(db, url))[0] for url in urls]
        await _deliver(db)
        assert v4.hits == 0 and v6.hits == 0
        for sid in sids:
            assert await _outcome(db, sid) == ("pending", None, "address not allowed")
        # the same targets with loopback allowed (as the tests' receivers are) do connect
        await db.execute("UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 s'")
        await _deliver(db, ALLOW_LOOPBACK)
        assert v4.hits == 3 and v6.hits == 1  # 0.0.0.0 stays refused: it is not loopback


async def test_names_resolving_inside_are_refused_at_connect_time(db) -> None:
    resolver = FakeResolver()
    async with Counter("127.0.0.1") as inside:
        evil, _ = await _subscribe(db, f"http://evil.example:{inside.port}/hooks")
        rebind, _ = await _subscribe(db, f"http://rebind.example:{inside.port}/hooks")
        meta, _ = await _subscribe(db, f"http://meta.example:{inside.port}/")
        await _deliver(db, resolver=resolver)
        assert inside.hits == 0
        assert set(resolver.asked) >= {"evil.example", "rebind.example", "meta.example"}
        for sid in (evil, rebind, meta):
            assert await _outcome(db, sid) == ("pending", None, "address not allowed")


async def test_allowed_name_connects_to_the_checked_address_with_its_own_host_header(db) -> None:
    """The CRM on the allowed network is reached by name: the connection goes to the address
    the guarded resolver checked, and the request still names the host (Host, and SNI for TLS)."""
    resolver = FakeResolver()
    sid, secret = await _subscribe(db, "http://placeholder.invalid/")
    crm = Receiver(secret)
    await db.execute(
        "UPDATE webhook_subscriptions SET url = $2 WHERE id = $1", sid, f"http://crm.lan.example:{crm.port}/hooks"
    )
    await crm.up()
    try:
        await _deliver(db, AddressPolicy(allow=(ip_network("127.0.0.1/32"),)), resolver=resolver)
    finally:
        await crm.down()
    assert resolver.asked == ["crm.lan.example"]
    assert len(crm.accepted) == 1 and crm.bad_signatures == 0
    assert crm.hosts == [f"crm.lan.example:{crm.port}"]
    assert await _outcome(db, sid) == ("delivered", 204, None)


async def test_redirects_are_not_followed(db) -> None:
    internal = Counter("127.0.0.2")
    crm = Counter("127.0.0.1", status=302, location=f"http://127.0.0.2:{internal.port}/admin")
    async with internal, crm:
        sid, _ = await _subscribe(db, f"http://127.0.0.1:{crm.port}/hooks")
        # the CRM itself is allowed, the address it redirects to would be allowed too
        await _deliver(db, AddressPolicy(allow=(ip_network("127.0.0.0/8"),)))
        assert crm.hits == 1 and internal.hits == 0
    assert await _outcome(db, sid) == ("pending", 302, "HTTP 302")


async def test_delivery_errors_shown_through_the_api_are_generic(api: Api) -> None:
    db = api.pool
    closed = free_port()
    async with Counter("127.0.0.1", status=500) as failing, Counter("127.0.0.1", delay=2) as slow:
        refused, _ = await _subscribe(db, f"http://127.0.0.1:{closed}/hooks")
        http500, _ = await _subscribe(db, f"http://127.0.0.1:{failing.port}/hooks")
        timeout, _ = await _subscribe(db, f"http://127.0.0.1:{slow.port}/hooks")
        internal, _ = await _subscribe(db, "http://169.254.169.254/latest/meta-data/")
        await _deliver(db, ALLOW_LOOPBACK, request_timeout=0.5)
    assert (await _outcome(db, refused))[2] == "connection failed"
    assert (await _outcome(db, http500))[1:] == (500, "HTTP 500")
    assert (await _outcome(db, timeout))[2] == "timeout"
    assert (await _outcome(db, internal))[2] == "address not allowed"
    resp = await api.client.get("/api/v1/webhooks/deliveries", headers=await api.as_role(Role.ADMIN))
    errors = {d["last_error"] for d in (await resp.json())["items"]}
    assert errors == {"connection failed", "HTTP 500", "timeout", "address not allowed"}
    assert errors - {"HTTP 500"} <= GENERIC_ERRORS


@pytest.mark.parametrize("url", ["http://[::1/", "http://[crm]/hooks", "http://crm.example:99999/", "http://:80/"])
async def test_urls_that_cannot_be_parsed_are_422_on_url(api: Api, url: str) -> None:
    resp = await api.client.post(
        "/api/v1/webhooks/subscriptions",
        json={"url": url, "event_types": ["*"]},
        headers=await api.as_role(Role.INTEGRATION),
    )
    body = await resp.json()
    assert resp.status == 422, body
    assert [f["field"] for f in body["details"]["fields"]] == ["url"]
    assert await api.pool.fetchval("SELECT count(*) FROM webhook_subscriptions") == 0
