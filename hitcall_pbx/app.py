"""The one composition root: builds every part of the service and wires them.

Nothing else constructs long-lived service objects; everything is injected from
here, so tests and the demo run exactly what `hitcall serve` runs.
"""

from __future__ import annotations

import asyncio
import gc
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from .agents.sessions import AgentSessions
from .agi.scripts import default_handlers
from .agi.server import AGI_UNCONFIGURED, AgiServer
from .alarms import AlarmMonitor, AlarmSources, service_inputs
from .api.app import create_app, create_metrics_app
from .api.deps import ApiDeps
from .ari import AriClient, AriRest
from .ari.client import RestFactory
from .auth import AuthService
from .cluster import NodeIdentity, NodeRegistry
from .cluster.commands import CommandBus
from .cluster.live import LiveRelay
from .cluster.peer import PeerFinder, PoolsPeer
from .cluster.routed import RoutedControl, RoutedMonitoring
from .core.leases import PoolClaim
from .core.netpolicy import AddressPolicy
from .core.pacing import PacingView
from .dialer.control import ApiOnlyControl, EngineControl
from .dialer.engine import Dialer
from .dialer.hopper import Hopper
from .dialer.inbound import InboundOptions, InboundRouter
from .dialer.monitor import Monitor
from .dialer.peer import PeerDesk
from .dialer.recording_pause import RecordingPauser
from .dialer.store import DialerStore
from .errors import ConfigError, HitCallError
from .hooks.dispatcher import WebhookDispatcher
from .hooks.retention import DEFAULT_KEEP as OUTBOX_KEEP
from .hooks.targets import WebhookTargets
from .livebus import LiveBus
from .logs import get_logger
from .looplag import LoopLagMonitor
from .metrics import MetricsSources, ServiceMetrics
from .pools import Pools, PoolsControl, PoolsMonitoring, PoolStack
from .privacy.api import ApiPrivacy
from .privacy.service import PrivacyService
from .records.api import ApiCdrs, ApiRecordings
from .records.cdr import CdrRecord, CdrWriter, default_spool_dir
from .records.journal import CallJournal
from .records.purge import PurgeWorker
from .records.recorder import Recorder
from .records.recordings import RecordingStore
from .settings import Settings
from .store.db import Database, connect
from .web import LiveHub, WallboardSources, WebDeps, setup_web

log = get_logger("hitcall.app")

DRAIN_HANGUP_WAIT_S = 5.0  # after the grace limit: for the hung-up calls' end events
SETTLE_S = 1.0  # a command from another node waits this long at most for the journal before it answers


@dataclass
class Options:
    """What to run. `hitcall serve` runs everything; tests and the demo switch parts off."""

    dialer: bool = True  # False: API only (no ARI, dialer, AGI, webhooks delivery, purge, alarms)
    dialer_tick_s: float = 0.25
    dialer_watchdog_s: float | None = 5.0  # None: no sweep of live calls against Asterisk
    campaign_refresh_s: float = 1.0
    migrate: bool = True
    ari_wait_s: float | None = 15.0
    http: bool = False
    agi: bool = False
    webhooks: bool = True
    purge_interval_s: float | None = None  # None: no scheduled purge
    alarm_interval_s: float | None = 5.0  # None: no alarm monitor
    shutdown_grace_s: float = 30.0
    inbound: InboundOptions = field(default_factory=InboundOptions)


class CdrSink:
    """The dialer hands over plain dicts; the writer takes validated records, stamped with
    the pool (Asterisk) that carried the call and the node that followed it to its end."""

    def __init__(self, writer: CdrWriter, claim: PoolClaim | None = None) -> None:
        self.writer = writer
        self.claim = claim

    def submit(self, record: dict[str, Any]) -> None:
        if self.claim is not None:
            record = {**record, "pool": record.get("pool") or self.claim.pool, "node_id": self.claim.node_id}
        try:
            cdr = CdrRecord.from_row(record)
        except (KeyError, HitCallError) as exc:
            # Never into the call path: the attempt row stays as inserted, the error is loud.
            log.error("cdr.invalid", attempt_id=str(record.get("id")), error=str(exc))
            return
        self.writer.submit(cdr)


def ari_client(settings: Settings, *, rest_factory: RestFactory = AriRest) -> AriClient:
    """The service's ARI client for `settings`: what `HitCall` runs unless given another factory."""
    assert settings.ari_password is not None  # Settings fills it in on loopback, else requires it
    return AriClient(
        settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app, rest_factory=rest_factory
    )


@dataclass
class HitCall:
    settings: Settings
    options: Options = field(default_factory=Options)
    ari_factory: Callable[[Settings], AriClient] | None = None  # None: `ari_client`
    db: Database | None = None
    pools: Pools = field(default_factory=Pools)  # the Asterisk servers this process drives, home first
    journal: CallJournal | None = None
    cdr: CdrWriter | None = None
    store: RecordingStore | None = None
    webhooks: WebhookDispatcher | None = None
    metrics: ServiceMetrics | None = None
    http_runner: web.AppRunner | None = None
    http_port: int | None = None
    agi: AgiServer | None = None
    alarms: AlarmMonitor | None = None
    draining: bool = False  # SIGTERM received: /readyz says not ready, no new calls
    looplag: LoopLagMonitor | None = None
    node: NodeRegistry | None = None  # this node's row and the pool leases it holds
    bus: LiveBus = field(default_factory=LiveBus)  # the journal's events, as they happen, for live screens
    web_hub: LiveHub | None = None
    relay: LiveRelay | None = None  # live events to and from the other nodes' screens
    commands: CommandBus | None = None  # live control carried to and from the other nodes
    _last_home: PoolStack | None = None  # the first pool's stack, also once closed
    _stack: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def start(self) -> HitCall:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def _start(self) -> None:
        s, o = self.settings, self.options
        agi = o.agi and s.agi_enabled
        if agi and s.agi_secret is None:
            raise ConfigError(
                f"{AGI_UNCONFIGURED}; or set HITCALL_AGI_ENABLED=false", details={"setting": "HITCALL_AGI_SECRET"}
            )
        self.looplag = LoopLagMonitor()
        await self.looplag.start()
        self._stack.append(self.looplag.close)
        self.db = Database(s, max_size=20)
        await self.db.open()
        self._stack.append(self.db.close)
        pool = self.db.pool
        if o.migrate:
            applied = await self.db.migrate()  # as the schema owner; grants the service role
            if applied:
                log.info("app.migrated", applied=applied)
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if not o.dialer:
            await self._start_api_only()
            return
        # One process per node id, and one node per pool: registered before anything reads
        # or recovers live rows; released last, once the pools' stacks are closed.
        dsn = self.db.dsn
        self.node = NodeRegistry(
            lambda: connect(dsn), NodeIdentity(s.node_id, tuple(s.pool_urls)), lease_s=s.node_lease_s
        )
        await self.node.register()
        self._stack.append(self.node.close)

        self.store = RecordingStore(s.data_dir / "recordings")
        self.cdr = CdrWriter(pool, default_spool_dir(s.data_dir))
        await self.cdr.start()
        self._stack.append(self.cdr.close)
        # Closed after the pools' stacks: what they write goes through it.
        self.journal = CallJournal(pool, spool_dir=s.data_dir / "spool" / "journal")
        self.journal.listeners.append(self.bus.publish)
        self.journal.listeners.append((await self._live_relay()).outgoing)
        await self.journal.start()
        self._stack.append(self.journal.close)
        # The home pool when its lease can be had now (else it is tried at every heartbeat);
        # the other pools when their node is gone.
        home_claim = await self.node.take(s.pool)
        home = await self.start_pool(s.pool, s.ari_url, connect=False, claim=home_claim) if home_claim else None
        if home is None:
            holder = await self.node.holder(s.pool)
            log.warning("app.pool_held_elsewhere", pool=s.pool, holder=holder[0] if holder else None)
        self._stack.append(self._close_pools)  # if the start fails further on
        self.commands = await self._command_bus()

        self.webhooks = WebhookDispatcher(
            pool, aiohttp.ClientSession, address_policy=AddressPolicy(s.webhook_allow_networks)
        )
        if o.webhooks:
            await self.webhooks.start()
            self._stack.append(self.webhooks.close)

        registry = CollectorRegistry()
        pools, cdr, journal, node = self.pools, self.cdr, self.journal, self.node
        self.metrics = metrics = ServiceMetrics(
            registry,
            MetricsSources(
                ari_connected=pools.ari_connected,
                ari_reconnects=pools.ari_reconnects,
                agent_counts=pools.agent_counts,
                call_counts=pools.call_counts,
                pacing_stats=pools.pacing_stats,
                cdr_backlog=lambda: cdr.spool_backlog,
                journal_backlog=lambda: journal.backlog,
                loop_lag=self.looplag,
                pacing_views=pools.pacing_views,
                node_pools=lambda: dict(node.held),
                node_fenced=lambda: node.fenced is not None,
            ),
        )
        if o.alarm_interval_s:
            alarm_sources = AlarmSources(
                pool=pool,
                ari_connected=pools.ari_connected,
                cdr_backlog=lambda: cdr.spool_backlog,
                campaigns=pools.campaigns,
                pacing_stats=pools.pacing_stats,
                purge_last_failed=lambda: metrics.purge_last_failed,
                webhook_stats=self.webhooks.stats,
                purge_interval_s=o.purge_interval_s,
                disk_root=self.store.root,
            )
            self.alarms = AlarmMonitor(
                pool,
                service_inputs(alarm_sources),
                registry=registry,
                interval=o.alarm_interval_s,
                journal=journal,
                node_id=s.node_id,
            )
        if o.http:
            privacy = PrivacyService(pool, self.store, export_dir=s.data_dir / "exports")
            deps = ApiDeps(
                pool=pool,
                metrics=registry,
                dialer=RoutedControl(
                    PoolsControl(self.pools), self.commands, pool, s.node_id, settle=lambda: journal.flush(SETTLE_S)
                ),
                cdrs=ApiCdrs(pool),
                recordings=ApiRecordings(pool, self.store),
                privacy=ApiPrivacy(privacy),
                webhooks=self.webhooks,
                ari_connected=self.pools.ari_connected,
                draining=lambda: self.draining,
                monitoring=RoutedMonitoring(PoolsMonitoring(self.pools), self.commands, pool, s.node_id),
            )
            await self._listen(deps)
        if agi and s.agi_secret is not None:
            secret = s.agi_secret.get_secret_value()
            handlers = default_handlers(journal=self.journal, home=(s.pool, s.node_id))
            self.agi = AgiServer(pool, s.agi_host, s.agi_port, handlers, secret=secret)
            await self.agi.start()
            self._stack.append(self.agi.close)
        if o.purge_interval_s:
            # One node at a time (the others skip that run); settled webhook events pruned too.
            purge = PurgeWorker(pool, self.store, spool_dir=default_spool_dir(s.data_dir), outbox_keep=OUTBOX_KEEP)
            self._tasks.append(asyncio.create_task(self._purge_loop(purge, o.purge_interval_s), name="purge"))

        # The pools' stacks are closed first: no new events while the rest shuts down.
        self._stack.append(self._close_pools)
        if home is not None:
            await self._connect_pool(home)
        for name in s.pool_urls:
            self.node.want(name, takeover=name != s.pool)
        self.node.on_taken(self._pool_taken)
        self.node.on_lost(self._pool_lost)
        # Commands from the other nodes run on this node's pools (answered once the journal has
        # written what they changed); on close, taking them stops first.
        journal = self.journal
        await self.commands.serve(
            PoolsControl(self.pools),
            PoolsMonitoring(self.pools),
            settle=lambda: journal.flush(SETTLE_S),
            peer=PoolsPeer(self.pools),
        )
        self._stack.append(self.commands.close)
        if self.alarms is not None:
            await self.alarms.start()
            self._stack.append(self.alarms.close)

    async def _listen(self, deps: ApiDeps) -> None:
        s = self.settings
        token = s.metrics_token.get_secret_value() if s.metrics_token is not None else None
        deps.metrics_token = token
        deps.metrics_on_api = s.metrics_port is None
        deps.webhook_targets = WebhookTargets(AddressPolicy(s.webhook_allow_networks))
        deps.announce = self._announce
        if s.metrics_port is not None:
            runner = web.AppRunner(create_metrics_app(deps.metrics, token=token), handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, s.metrics_host, s.metrics_port).start()
            self._stack.append(runner.cleanup)
            log.info("app.metrics_listening", host=s.metrics_host, port=s.metrics_port, token=token is not None)
        elif token is None and s.http_host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("app.metrics_open", host=s.http_host, hint="set HITCALL_METRICS_TOKEN or HITCALL_METRICS_PORT")
        app = create_app(deps, trusted_proxies=s.trusted_proxy_networks)
        self.web_hub = LiveHub(deps.pool, self.bus, WallboardSources(deps.dialer.live_calls, self._pacing_view))
        await self.web_hub.start()
        self._stack.append(self.web_hub.close)
        web_auth = AuthService(
            deps.pool, passwords=deps.passwords, policy=deps.throttle, session_ttl=deps.session_ttl, clock=deps.clock
        )
        setup_web(app, WebDeps(deps.pool, web_auth, self.web_hub))
        self.http_runner = web.AppRunner(app, handle_signals=False)
        await self.http_runner.setup()
        site = web.TCPSite(self.http_runner, s.http_host, s.http_port)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # aiohttp: a started site has its server
        self._stack.append(self.http_runner.cleanup)
        log.info("app.http_listening", host=s.http_host, port=self.http_port)

    def _pacing_changed(self, campaign_id: int, view: PacingView) -> None:
        """A campaign's pacing changed in a way worth showing: to the live screens."""
        self._announce("pacing.changed", f"campaign:{campaign_id}", {"campaign_id": campaign_id, **view.to_dict()})

    def _announce(self, event_type: str, subject: str, payload: dict[str, Any]) -> None:
        """An event for the live screens: this node's, and the other nodes' through the relay."""
        self.bus.publish(event_type, subject, payload)
        if self.relay is not None:
            self.relay.outgoing(event_type, subject, payload)

    def _pacing_view(self, campaign_id: int) -> dict[str, Any] | None:
        """The pacer's latest view of a running campaign, for the wallboard."""
        view = self.pools.pacing_views().get(campaign_id)
        if view is None:
            return None
        # every figure of the view (predicted idle agents, abandon price, budget left,
        # fallback and its reason too), with the decision as the wallboard reads it
        return {
            **view.to_dict(),
            "decision": {"dial_now": view.dial_now, "mode_effective": view.mode_effective},
        }

    async def _start_api_only(self) -> None:
        """The REST API over the database, for a process beside the nodes that dial: live
        control of an agent or call is asked of the node that drives it (503 when none does)."""
        s = self.settings
        assert self.db is not None
        pool = self.db.pool
        self.store = RecordingStore(s.data_dir / "recordings")
        registry = CollectorRegistry()
        privacy = PrivacyService(pool, self.store, export_dir=s.data_dir / "exports")
        self.webhooks = WebhookDispatcher(pool, aiohttp.ClientSession)  # replay and stats only: no delivery loop
        self.commands = await self._command_bus()  # asks the nodes that drive agents and calls; serves none
        await self._live_relay()  # the nodes' live events, for the screens this process serves
        deps = ApiDeps(
            pool=pool,
            metrics=registry,
            dialer=RoutedControl(ApiOnlyControl(pool), self.commands, pool, None),
            cdrs=ApiCdrs(pool),
            recordings=ApiRecordings(pool, self.store),
            privacy=ApiPrivacy(privacy),
            webhooks=self.webhooks,
            ari_connected=lambda: False,
            draining=lambda: self.draining,
            monitoring=RoutedMonitoring(None, self.commands, pool, None),
        )
        await self._listen(deps)

    async def _live_relay(self) -> LiveRelay:
        """This process's live events to the other nodes' screens, theirs to this one's."""
        assert self.db is not None
        dsn = self.db.dsn
        # One id per process (an API-only process may share its host's node id)
        self.relay = LiveRelay(
            self.db.pool, lambda: connect(dsn), self.bus, f"{self.settings.node_id}.{uuid.uuid4().hex[:8]}"
        )
        await self.relay.start()
        self._stack.append(self.relay.close)
        return self.relay

    async def _command_bus(self) -> CommandBus:
        """Live control of agents and calls another node drives goes to it through PostgreSQL."""
        assert self.db is not None
        dsn = self.db.dsn
        bus = CommandBus(self.db.pool, self.settings.node_id, lambda: connect(dsn))
        await bus.start()
        self._stack.append(bus.close)
        return bus

    # ------------------------------------------------------------ pools ---
    async def start_pool(
        self, name: str, ari_url: str, *, connect: bool = True, claim: PoolClaim | None = None
    ) -> PoolStack:
        """Build and start the stack that drives the Asterisk server `name` at `ari_url`
        (restart recovery of what a stopped holder left runs at its first connect);
        `connect=False`: the caller connects it with `_connect_pool` when the rest is up.
        `claim`: the pool's lease this node holds (its rows carry the pool and node, and it
        dials only while the lease has this node and token)."""
        s, o = self.settings, self.options
        assert self.db is not None and self.journal is not None and self.cdr is not None and self.store is not None
        if name in self.pools.stacks:
            raise ConfigError(f"pool {name!r} is already driven by this process", details={"pool": name})
        pool, journal = self.db.pool, self.journal
        pool_settings = s if ari_url == s.ari_url else s.model_copy(update={"ari_url": ari_url})
        ari = (self.ari_factory or ari_client)(pool_settings)
        closers: list[Callable[[], Awaitable[Any]]] = []
        try:
            sessions = AgentSessions(ari, pool, journal=journal, claim=claim)
            closers.append(sessions.close)
            hopper = Hopper(pool, claim=claim)
            dialer = Dialer(
                ari,
                DialerStore(pool, hopper, claim=claim),
                sessions,
                hopper,
                CdrSink(self.cdr, claim),
                tick_s=o.dialer_tick_s,
                campaign_refresh_s=o.campaign_refresh_s,
                journal=journal,
                watchdog_s=o.dialer_watchdog_s,
                fenced=lambda: self._fenced(name, claim),
            )
            recorder = Recorder(ari, pool, self.store, s.data_dir / "spool" / "recordings")
            dialer.on_call_end.append(recorder.call_ended)
            pauser = RecordingPauser(ari, dialer, sessions, journal)
            ari.on_event(pauser.handle_event)
            ari.on_event(dialer.handle_event)
            dialer.pacer.on_view = self._pacing_changed
            # After the dialer: a newly ready agent goes to an answered outbound customer first.
            # Several servers: a caller no agent here takes may get one on another server over
            # the trunk between them; this pool's agents take such calls from the others.
            finder = PeerFinder(pool, self.pools, lambda: self.commands, name, claim.node_id if claim else None)
            inbound = InboundRouter(
                ari,
                pool,
                sessions,
                o.inbound,
                cdr=CdrSink(self.cdr, claim),
                journal=journal,
                claim=claim,
                peer=finder if claim is not None else None,
            )
            ari.on_event(inbound.handle_event)
            ari.on_resync(inbound.handle_resync)
            peer = PeerDesk(ari, sessions, claim=claim)
            ari.on_event(peer.handle_event)
            ari.on_resync(peer.handle_resync)
            # Trunk calls a stopped process had put through to this pool's agents: followed again.
            dialer.recovery.on_restart.append(peer.recover)
            closers.append(peer.close)
            # Inbound calls a stopped process left: adopted or closed before the dialer dials.
            dialer.recovery.on_restart.append(inbound.recover)
            dialer.recovery.on_sweep.append(inbound.sweep_orphans)
            ari.on_event(recorder.handle_event)
            # Supervisors' listen / whisper / barge: what a stopped process left is undone before
            # the dialer adopts agents and calls; a session ends with the call, after the dialer saw its end.
            monitor = Monitor(ari, pool, sessions, dialer, claim=claim)
            ari.on_resync(monitor.recover)
            ari.on_resync(dialer.handle_resync)
            await monitor.start()
            dialer.on_call_end.append(monitor.call_ended)
            ari.on_event(monitor.handle_event)
            ari.on_resync(monitor.handle_resync)
            await dialer.start()
            closers.append(dialer.close)
            closers.append(monitor.close)
        except BaseException:
            for closer in reversed(closers):
                await closer()
            raise
        stack = PoolStack(
            name,
            ari,
            sessions,
            dialer,
            recorder,
            pauser,
            inbound,
            monitor,
            EngineControl(dialer, sessions, recording=pauser),
            closers,
            peer,
        )
        self.pools.stacks[name] = stack
        if self._last_home is None:
            self._last_home = stack
        if connect:
            await self._connect_pool(stack)
        log.info("app.pool_started", pool=name)
        return stack

    async def _connect_pool(self, stack: PoolStack) -> None:
        stack.closers.append(stack.ari.close)  # closed first: no new events while the rest stops
        await stack.ari.start(wait=self.options.ari_wait_s)

    def _fenced(self, name: str, claim: PoolClaim | None) -> str | None:
        """Why the stack of pool `name` may not dial (None: it may): this node lost the
        pool's lease, or holds it under another token than the stack was started with."""
        if claim is None or self.node is None:
            return None
        if self.node.claim(name) != claim:
            return self.node.fenced or f"pool {name}: this node no longer holds the pool's lease (token {claim.token})"
        return None

    def _pool_taken(self, claim: PoolClaim) -> None:
        """The heartbeat took a pool: its stack starts (restart recovery of that pool first)."""
        self._tasks.append(asyncio.create_task(self._start_taken(claim), name=f"pool-start-{claim.pool}"))

    async def _start_taken(self, claim: PoolClaim) -> None:
        url = self.settings.pool_urls.get(claim.pool)
        if url is None or self.draining:
            return
        stale = self.pools.stacks.get(claim.pool)
        if stale is not None:  # a stack from a lease lost meanwhile: gone before the new one
            await self.stop_pool(claim.pool)
        # What this node wrote while the database was away (a node that fenced itself and now
        # takes its pool back) lands before recovery reads the pool's rows: judged from stale
        # rows, a call still talking would pass for merely answered, and a CDR still spooled
        # would be overwritten by recovery's guess.
        await self._land_spools()
        try:
            await self.start_pool(claim.pool, url, claim=claim)
        except Exception:
            log.exception("app.pool_start_failed", pool=claim.pool)
            assert self.node is not None
            await self.stop_pool(claim.pool)
            await self.node.release(claim.pool)

    async def _land_spools(self, timeout: float = 30.0) -> None:
        assert self.journal is not None and self.cdr is not None
        try:
            await self.journal.flush(timeout)
            await self.cdr.committed(timeout)
        except Exception as exc:  # recovery still runs: better late rows than no pool
            log.warning(
                "app.spools_not_landed", error=repr(exc), journal=self.journal.backlog, cdr=self.cdr.spool_backlog
            )

    def _pool_lost(self, pool: str, reason: str) -> None:
        """The pool's lease is lost: its stack closes without hanging up calls (the next
        holder adopts them) and its ARI client stops reconnecting."""
        log.error("app.pool_lost", pool=pool, reason=reason)
        stack = self.pools.stacks.pop(pool, None)  # at once: a stack started for a later lease is not this one
        if stack is not None:
            self._tasks.append(asyncio.create_task(self._close_lost(stack), name=f"pool-stop-{pool}"))

    async def _close_lost(self, stack: PoolStack) -> None:
        await stack.close()
        log.info("app.pool_stopped", pool=stack.name)

    async def stop_pool(self, name: str) -> None:
        """Stop driving the Asterisk server `name`: its stack closes without hanging up calls."""
        stack = self.pools.stacks.pop(name, None)
        if stack is not None:
            await stack.close()
            log.info("app.pool_stopped", pool=name)

    async def _close_pools(self) -> None:
        for stack in reversed(list(self.pools)):
            await self.stop_pool(stack.name)

    # The home pool's parts (one process driving one Asterisk: tests, the demo, benchmarks).
    def _home(self) -> PoolStack | None:
        # after close too: a test reads the ARI client's figures once the service has stopped
        return self.pools.home() or self._last_home

    @property
    def ari(self) -> AriClient | None:
        h = self._home()
        return h.ari if h else None

    @property
    def sessions(self) -> AgentSessions | None:
        h = self._home()
        return h.sessions if h else None

    @property
    def dialer(self) -> Dialer | None:
        h = self._home()
        return h.dialer if h else None

    @property
    def inbound(self) -> InboundRouter | None:
        h = self._home()
        return h.inbound if h else None

    @property
    def monitor(self) -> Monitor | None:
        h = self._home()
        return h.monitor if h else None

    @property
    def recorder(self) -> Recorder | None:
        h = self._home()
        return h.recorder if h else None

    @property
    def recording_pauser(self) -> RecordingPauser | None:
        h = self._home()
        return h.recording_pauser if h else None

    async def _purge_loop(self, worker: PurgeWorker, interval: float) -> None:
        while True:
            try:
                report = await worker.run_once()
                if self.metrics:
                    self.metrics.purge_done(report)
                if report.outbox_events_pruned:
                    log.info("webhooks.outbox_pruned", events=report.outbox_events_pruned)
            except Exception:
                log.exception("purge.failed")
                if self.metrics:
                    self.metrics.purge_failed()
            await asyncio.sleep(interval)

    async def drain_calls(self, timeout: float, abort: asyncio.Event | None = None) -> None:
        """Graceful shutdown: not ready any more, no new calls; calls in progress end on
        their own for up to `timeout` s (or until `abort` is set). Calls still up then are
        hung up here, so that this process writes their CDRs and events."""
        self.draining = True
        stacks = list(self.pools)
        if not stacks:
            return
        for st in stacks:
            await st.dialer.close()
            await st.inbound.close()
        idle = asyncio.gather(*(x for st in stacks for x in (st.dialer.idle(timeout), st.inbound.idle(timeout))))
        waits: list[asyncio.Future[Any]] = [idle] + ([asyncio.ensure_future(abort.wait())] if abort else [])
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        left = sum(len(st.dialer.live_calls()) + len(st.inbound.live_calls()) for st in stacks)
        if left:
            log.warning("app.drain_hangup", calls=left, grace_s=timeout)
            for st in stacks:
                await st.dialer.close(hangup_calls=True)
                await st.inbound.close(hangup_calls=True)
            await asyncio.gather(
                *(
                    x
                    for st in stacks
                    for x in (st.dialer.idle(DRAIN_HANGUP_WAIT_S), st.inbound.idle(DRAIN_HANGUP_WAIT_S))
                )
            )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        while self._stack:
            closer = self._stack.pop()
            try:
                await closer()
            except Exception:
                log.exception("app.close_failed", part=getattr(closer, "__qualname__", str(closer)))

    async def __aenter__(self) -> HitCall:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def settle_heap() -> None:
    """Once the service has started: what start-up built (modules, schemas, number metadata:
    most of the heap) lives as long as the process, so it goes out of the collector's reach
    and a full collection under load scans only the live calls' objects (without it, a full
    collection paused the event loop for 26-32 ms in the answer-latency benchmark)."""
    gc.collect()
    gc.freeze()


async def serve(settings: Settings, *, api_only: bool = False) -> int:
    """`hitcall serve`: everything in one process until SIGTERM / SIGINT (`api_only`: the
    REST API only, beside the process that dials)."""
    import signal

    stop, again = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (again if stop.is_set() else stop).set()  # a second signal cuts the drain short

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    options = Options(
        dialer=not api_only,
        http=True,
        agi=not api_only,
        purge_interval_s=settings.purge_interval_s or None,  # 0: no scheduled purge
        ari_wait_s=None,
        shutdown_grace_s=settings.shutdown_grace_s,
    )
    app = HitCall(settings, options)
    await app.start()
    settle_heap()
    log.info("app.serving", pid=os.getpid(), api_only=api_only)
    try:
        await stop.wait()
        log.info("app.stopping", grace_s=options.shutdown_grace_s)
        await app.drain_calls(options.shutdown_grace_s, again)
    finally:
        await app.close()
    return 0
