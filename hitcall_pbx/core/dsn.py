"""PostgreSQL connection URLs: the hosts one names, and what the service refuses in one.

A URL may name several hosts, as libpq takes them
(``postgresql://u:p@db1:5432,db2:5432/hitcall?target_session_attrs=read-write``, or
``host=db1,db2&port=5432,5432`` in the query): a primary and its standbys, of which the
service uses the one that is read-write (`store.db.HostWalk`).
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit


def dsn_host(dsn: str) -> str:
    """Where a DSN points, for messages: ``host:port`` (comma-separated when it names several
    hosts) or the socket directory. No secrets."""
    hosts = dsn_hosts(dsn)
    if not hosts:
        return "localhost"
    return ",".join(host if port is None or host.startswith("/") else f"{host}:{port}" for host, port in hosts)


def dsn_hosts(dsn: str) -> list[tuple[str, int | None]]:
    """The hosts a DSN names, in order: from the address (``postgresql://u@h1:5432,h2:5433/db``)
    or the ``host=`` / ``port=`` query parameters (comma-separated lists, as libpq takes them).
    The port is None where the DSN gives none (or none that is a number: `check_dsn` refuses that)."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    spec = unquote(parts.netloc.rpartition("@")[2])
    specs = spec.split(",") if spec else [h for h in ",".join(query.get("host") or []).split(",") if h]
    ports = [p for p in ",".join(query.get("port") or []).split(",") if p]
    hosts: list[tuple[str, int | None]] = []
    for n, item in enumerate(specs):
        host, port = item, ""
        if item.startswith("["):  # [v6] or [v6]:port
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        if not port and ports:
            port = ports[min(n, len(ports) - 1)]
        hosts.append((host or "localhost", int(port) if port.isdigit() else None))
    return hosts


def check_dsn(dsn: str) -> None:
    """ValueError naming what is wrong with a DSN the service would connect with: a host
    without a valid port, a `connect_timeout` that is not a number of seconds, a
    `target_session_attrs` asyncpg does not know."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    for item in unquote(parts.netloc.rpartition("@")[2]).split(","):
        port = item.rpartition("]")[2] if item.startswith("[") else item
        if ":" in port:
            text = port.rpartition(":")[2]
            if not (text.isdigit() and 0 < int(text) < 65536):
                raise ValueError(f"has an invalid port {text!r} (host {item!r})")
    timeout = (query.get("connect_timeout") or [""])[-1]
    if timeout:
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= 300:
            raise ValueError("connect_timeout must be a number of seconds, more than 0 and at most 300")
    attrs = (query.get("target_session_attrs") or [""])[-1]
    if attrs and attrs not in _SESSION_ATTRS:
        raise ValueError(f"target_session_attrs must be one of {', '.join(_SESSION_ATTRS)}")


# The values asyncpg takes.
_SESSION_ATTRS = ("read-write", "primary", "any", "read-only", "standby", "prefer-standby")
