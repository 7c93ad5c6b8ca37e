"""Service settings from the environment (pydantic-settings).

With nothing set, HitCall runs against the local sandbox: embedded Postgres in the
data dir and the sandboxed Asterisk on loopback. A malformed or missing value is a
`ConfigError` whose message is one readable line (the CLI exits 2 with it).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .core.dsn import check_dsn
from .core.leases import MAX_LEASE_S, MIN_LEASE_S, parse_takeover_pools, valid_name
from .core.netaddr import IPNetwork, parse_networks
from .errors import ConfigError

SANDBOX_ARI_USER = "hitcall"
SANDBOX_ARI_PASSWORD = "hitcall-sandbox"  # noqa: S105 (the sandbox's public test value)
# The sandbox dialplan's HITCALL_AGI_SECRET (dialplan/sandbox/extensions_hitcall_local.conf); tests only.
SANDBOX_AGI_SECRET = "hitcall-sandbox-agi-secret"  # noqa: S105 (the sandbox's public test value)
AGI_SECRET_RE = re.compile(r"[A-Za-z0-9._~-]{16,256}")  # URL-safe: it travels in the AGI URL's query

MAX_PURGE_INTERVAL_S = 7 * 86400.0  # retention deadlines are days apart; a week at most between purges
MAX_SHUTDOWN_GRACE_S = 3600.0

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def default_node_id() -> str:
    """The host name, as a node id (characters a node id may not have become '-')."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64]
    return name or "hitcall"


def _check_ari_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s):// URL of Asterisk's ARI, e.g. http://127.0.0.1:8088/ari")
    try:
        _ = parts.port  # raises on a port that is not a number in 0-65535
    except ValueError as exc:
        raise ValueError(f"has an invalid port ({exc})") from None
    return v.rstrip("/")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    # Migrations run as this (the schema owner); unset: as DATABASE_URL's role.
    migrate_database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("HITCALL_MIGRATE_DATABASE_URL")
    )
    ari_url: str = Field(default="http://127.0.0.1:8088/ari", validation_alias=AliasChoices("HITCALL_ARI_URL"))
    ari_user: str = Field(default=SANDBOX_ARI_USER, validation_alias=AliasChoices("HITCALL_ARI_USER"))
    ari_password: str | None = Field(default=None, validation_alias=AliasChoices("HITCALL_ARI_PASSWORD"))
    ari_app: str = Field(default="hitcall", validation_alias=AliasChoices("HITCALL_ARI_APP"))
    data_dir: Path = Field(default=Path("var"), validation_alias=AliasChoices("HITCALL_DATA_DIR"))
    log_level: LogLevel = Field(default="INFO", validation_alias=AliasChoices("HITCALL_LOG_LEVEL"))
    http_host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HITCALL_HTTP_HOST"))
    http_port: int = Field(default=8080, ge=1, le=65535, validation_alias=AliasChoices("HITCALL_HTTP_PORT"))
    agi_port: int = Field(default=4573, ge=1, le=65535, validation_alias=AliasChoices("HITCALL_AGI_PORT"))
    agi_host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HITCALL_AGI_HOST"))
    # FastAGI: every request must carry this (the dialplan's HITCALL_AGI_SECRET); required to run FastAGI.
    agi_secret: SecretStr | None = Field(default=None, validation_alias=AliasChoices("HITCALL_AGI_SECRET"))
    agi_enabled: bool = Field(default=True, validation_alias=AliasChoices("HITCALL_AGI_ENABLED"))
    # Reverse proxies whose X-Forwarded-For names the client (addresses or CIDR networks).
    trusted_proxies: str = Field(default="", validation_alias=AliasChoices("HITCALL_TRUSTED_PROXIES"))
    # Webhook targets the address policy lets through although not public (a CRM on the LAN): networks.
    webhook_allow_nets: str = Field(default="", validation_alias=AliasChoices("HITCALL_WEBHOOK_ALLOW_NETS"))
    # /metrics: a bearer token it requires, and/or a listener of its own (then not on the API port)
    metrics_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("HITCALL_METRICS_TOKEN"))
    metrics_host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HITCALL_METRICS_HOST"))
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, validation_alias=AliasChoices("HITCALL_METRICS_PORT")
    )
    # `hitcall serve`: seconds between scheduled purges (0: none, e.g. when cron runs `hitcall purge`).
    purge_interval_s: float = Field(
        default=3600.0,
        ge=0,
        le=MAX_PURGE_INTERVAL_S,
        allow_inf_nan=False,
        validation_alias=AliasChoices("HITCALL_PURGE_INTERVAL_S"),
    )
    # `hitcall serve` on SIGTERM: seconds calls in progress may go on before the service hangs them up.
    shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        le=MAX_SHUTDOWN_GRACE_S,
        allow_inf_nan=False,
        validation_alias=AliasChoices("HITCALL_SHUTDOWN_GRACE_S"),
    )

    # Several nodes: this process's node id, its home pool (the Asterisk at HITCALL_ARI_URL),
    # its lease, and the pools it may take over when their node is gone (name=ari_url,...).
    node_id: str = Field(default_factory=default_node_id, validation_alias=AliasChoices("HITCALL_NODE_ID"))
    pool: str = Field(default="main", validation_alias=AliasChoices("HITCALL_POOL"))
    node_lease_s: float = Field(
        default=10.0,
        ge=MIN_LEASE_S,
        le=MAX_LEASE_S,
        allow_inf_nan=False,
        validation_alias=AliasChoices("HITCALL_NODE_LEASE_S"),
    )
    takeover_pools: str = Field(default="", validation_alias=AliasChoices("HITCALL_TAKEOVER_POOLS"))

    @field_validator("node_id", "pool")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not valid_name(v):
            raise ValueError(f"{v!r} must be 1-64 characters of letters, digits, '_', '.', '-'")
        return v

    @field_validator("takeover_pools")
    @classmethod
    def _takeover_pools(cls, v: str) -> str:
        for name, url in parse_takeover_pools(v):  # ValueError naming the bad entry
            try:
                _check_ari_url(url)
            except ValueError as exc:
                raise ValueError(f"pool {name}: the ARI URL {exc}") from None
        return v

    @property
    def pool_urls(self) -> dict[str, str]:
        """Every pool this node may drive, home pool first: name -> ARI URL."""
        out = {self.pool: self.ari_url}
        for name, url in parse_takeover_pools(self.takeover_pools):
            out[name] = _check_ari_url(url)
        return out

    @field_validator("database_url", "migrate_database_url")
    @classmethod
    def _dsn(cls, v: str | None) -> str | None:
        if v is None or v.strip() == "":
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("postgres", "postgresql") or not (parts.hostname or "host=" in v):
            raise ValueError("must be a postgresql:// URL, e.g. postgresql://user:pass@host:5432/db")
        check_dsn(v)  # several hosts (a primary and its standbys): each with a valid port
        return v

    @field_validator("ari_url")
    @classmethod
    def _ari_url(cls, v: str) -> str:
        return _check_ari_url(v)

    @field_validator("ari_app")
    @classmethod
    def _app(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
            raise ValueError("must be 1-64 characters of letters, digits, '_', '.', '-'")
        return v

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _metrics_token(cls, v: object) -> object:
        if isinstance(v, str):
            if v.strip() == "":
                return None
            if not re.fullmatch(r"[\x21-\x7e]{32,256}", v):
                raise ValueError("must be 32-256 printable characters without spaces, e.g. `openssl rand -hex 32`")
        return v

    @field_validator("agi_secret", mode="before")
    @classmethod
    def _agi_secret(cls, v: object) -> object:
        if isinstance(v, str):
            if v.strip() == "":
                return None
            if not AGI_SECRET_RE.fullmatch(v):
                raise ValueError(
                    "must be 16-256 characters of letters, digits, '.', '_', '~', '-', e.g. `openssl rand -hex 32`"
                )
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, v: str) -> str:
        parse_networks(v)  # ValueError naming the bad entry
        return v

    @property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.trusted_proxies)

    @field_validator("webhook_allow_nets")
    @classmethod
    def _webhook_allow_nets(cls, v: str) -> str:
        parse_networks(v)  # ValueError naming the bad entry
        return v

    @property
    def webhook_allow_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.webhook_allow_nets)

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _metrics_port(cls, v: object) -> object:
        return None if isinstance(v, str) and v.strip() == "" else v

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _home_pool_once(self) -> Settings:
        if self.pool in dict(parse_takeover_pools(self.takeover_pools)):
            raise ValueError(
                f"HITCALL_TAKEOVER_POOLS names the home pool {self.pool} (HITCALL_POOL, driven at HITCALL_ARI_URL)"
            )
        return self

    @model_validator(mode="after")
    def _password(self) -> Settings:
        if self.ari_password is None:
            if not _is_loopback(urlsplit(self.ari_url).hostname):
                raise ValueError("HITCALL_ARI_PASSWORD is required when HITCALL_ARI_URL is not on loopback")
            for name, url in parse_takeover_pools(self.takeover_pools):
                if not _is_loopback(urlsplit(url).hostname):
                    raise ValueError(
                        f"HITCALL_ARI_PASSWORD is required when a pool's ARI URL is not on loopback (pool {name})"
                    )
            self.ari_password = SANDBOX_ARI_PASSWORD
        return self

    @property
    def ari_ws_url(self) -> str:
        parts = urlsplit(self.ari_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/events"


_ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "ari_url": "HITCALL_ARI_URL",
    "ari_user": "HITCALL_ARI_USER",
    "ari_password": "HITCALL_ARI_PASSWORD",
    "ari_app": "HITCALL_ARI_APP",
    "data_dir": "HITCALL_DATA_DIR",
    "log_level": "HITCALL_LOG_LEVEL",
    "http_host": "HITCALL_HTTP_HOST",
    "http_port": "HITCALL_HTTP_PORT",
    "agi_port": "HITCALL_AGI_PORT",
    "agi_host": "HITCALL_AGI_HOST",
    "agi_secret": "HITCALL_AGI_SECRET",
    "agi_enabled": "HITCALL_AGI_ENABLED",
    "trusted_proxies": "HITCALL_TRUSTED_PROXIES",
    "webhook_allow_nets": "HITCALL_WEBHOOK_ALLOW_NETS",
    "migrate_database_url": "HITCALL_MIGRATE_DATABASE_URL",
    "metrics_token": "HITCALL_METRICS_TOKEN",
    "metrics_host": "HITCALL_METRICS_HOST",
    "metrics_port": "HITCALL_METRICS_PORT",
    "purge_interval_s": "HITCALL_PURGE_INTERVAL_S",
    "shutdown_grace_s": "HITCALL_SHUTDOWN_GRACE_S",
    "node_id": "HITCALL_NODE_ID",
    "pool": "HITCALL_POOL",
    "node_lease_s": "HITCALL_NODE_LEASE_S",
    "takeover_pools": "HITCALL_TAKEOVER_POOLS",
}


def load_settings(**overrides: object) -> Settings:
    """Read settings; raise `ConfigError` with one readable line on bad input."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # values of any type: validated like the environment's
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc") or ()
        field = str(loc[0]) if loc else ""
        name = _ENV_NAMES.get(field, field or "settings")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if name == "settings":
            raise ConfigError(f"invalid settings: {msg}") from None
        raise ConfigError(f"invalid setting {name}: {msg}", details={"setting": name}) from None
