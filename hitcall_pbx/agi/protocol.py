"""The FastAGI protocol over an asyncio stream.

Asterisk opens the connection and sends the ``agi_*`` environment, one ``key: value``
line each, ended by an empty line. The script then sends one command per line and
reads one reply: ``200 result=<value> [(<data>)] [key=value ...]``; ``510`` (unknown
command), ``511`` (channel is dead) or ``520`` (usage error, possibly several lines
``520-...`` ended by ``520 ...``). When the channel hangs up Asterisk also sends a
lone ``HANGUP`` line, which can arrive before any reply.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from ..logs import get_logger

MAX_LINE = 8192
MAX_ENV_LINES = 128

_REPLY_200 = re.compile(r"^200 result=(?P<result>\S*)(?: \((?P<data>.*)\))?(?P<extra>(?: [A-Za-z_]+=\S*)*)$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,79}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_log = get_logger("hitcall.agi")


class AgiError(Exception):
    """The peer broke the protocol or refused a command."""


class AgiHangup(AgiError):
    """The channel hung up or the connection closed."""


@dataclass(frozen=True)
class AgiReply:
    code: int
    result: str
    data: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def value(self) -> int:
        try:
            return int(self.result)
        except ValueError:
            raise AgiError(f"non-numeric AGI result {self.result!r}") from None


def parse_reply(line: str) -> AgiReply:
    """Parse a ``200 result=...`` line; AgiHangup for 511, AgiError for anything else."""
    m = _REPLY_200.match(line)
    if m:
        extra = dict(pair.split("=", 1) for pair in m["extra"].split())
        return AgiReply(200, m["result"], m["data"], extra)
    if line.startswith("511"):
        raise AgiHangup(f"channel is dead: {line}")
    if line.startswith(("510", "520")):
        raise AgiError(f"command refused: {line}")
    raise AgiError(f"malformed AGI reply {line[:200]!r}")


def parse_env_line(line: str) -> tuple[str, str]:
    """One ``agi_key: value`` line of the environment block."""
    key, sep, value = line.partition(":")
    if not sep or not re.fullmatch(r"agi_[a-z0-9_]{1,40}", key):
        raise AgiError(f"malformed AGI environment line {line[:200]!r}")
    return key, value.removeprefix(" ")


def quote(arg: str) -> str:
    """One command argument, double-quoted; control characters become spaces so a
    value can never end the command line or start another command."""
    text = _CONTROL.sub(" ", str(arg))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_command(verb: str, *args: str | int) -> bytes:
    """``VERB arg ...`` as sent on the wire; `verb` is the fixed command words."""
    if not re.fullmatch(r"[A-Z]+(?: [A-Z]+)*", verb):
        raise ValueError(f"invalid AGI command {verb!r}")
    parts = [verb, *(str(a) if isinstance(a, int) else quote(a) for a in args)]
    return (" ".join(parts) + "\n").encode()


class AgiSession:
    """One FastAGI connection: the channel's environment and its command channel."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        env: dict[str, str],
        *,
        reply_timeout: float = 120.0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.env = env
        self._reply_timeout = reply_timeout
        self.hung_up = False

    @classmethod
    async def open(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        env_timeout: float = 10.0,
        reply_timeout: float = 120.0,
    ) -> AgiSession:
        """Read the environment block (bounded in lines and time) and return the session."""
        session = cls(reader, writer, {}, reply_timeout=reply_timeout)
        async with asyncio.timeout(env_timeout):
            while (line := await session._readline()) != "":
                if len(session.env) >= MAX_ENV_LINES:
                    raise AgiError("AGI environment block too long")
                key, value = parse_env_line(line)
                session.env[key] = value
        if "agi_request" not in session.env and "agi_network_script" not in session.env:
            raise AgiError("AGI environment has no agi_request")
        return session

    # ---------------------------------------------------------- environment ---
    @property
    def script(self) -> str:
        """The script name from ``agi://host:port/<script>?...``."""
        return self.env.get("agi_network_script", "").split("?", 1)[0].strip("/")

    def take_param(self, name: str) -> str | None:
        """The value of `name` in the script URL's query (``agi://host/script?name=value``),
        then removed from the environment so that nothing logs it later; None when absent."""
        found: str | None = None
        for key in ("agi_network_script", "agi_request"):
            value = self.env.get(key)
            if value is None or "?" not in value:
                continue
            base, _, query = value.partition("?")
            pairs = parse_qsl(query, keep_blank_values=True)
            if found is None:
                found = next((v for k, v in pairs if k == name), None)
            kept = [(k, v) for k, v in pairs if k != name]
            self.env[key] = base + ("?" + urlencode(kept) if kept else "")
        return found

    @property
    def args(self) -> list[str]:
        out, n = [], 1
        while f"agi_arg_{n}" in self.env:
            out.append(self.env[f"agi_arg_{n}"])
            n += 1
        return out

    @property
    def caller_id(self) -> str | None:
        value = self.env.get("agi_callerid", "")
        return None if value in ("", "unknown") else value

    @property
    def extension(self) -> str | None:
        return self.env.get("agi_extension") or None

    @property
    def uniqueid(self) -> str | None:
        return self.env.get("agi_uniqueid") or None

    # ------------------------------------------------------------- commands ---
    async def command(self, verb: str, *args: str | int) -> AgiReply:
        """Send one command and return its 200 reply."""
        try:
            self._writer.write(format_command(verb, *args))
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise AgiHangup(f"connection closed: {exc}") from None
        async with asyncio.timeout(self._reply_timeout):
            while True:
                line = await self._readline()
                if line == "HANGUP":
                    self.hung_up = True
                    continue
                if line.startswith("520-"):
                    while not (line := await self._readline()).startswith("520 "):
                        pass
                return parse_reply(line)

    async def _readline(self) -> str:
        try:
            raw = await self._reader.readline()
        except (ValueError, asyncio.LimitOverrunError):
            raise AgiError(f"AGI line longer than {MAX_LINE} bytes") from None
        except (ConnectionError, OSError) as exc:
            raise AgiHangup(f"connection closed: {exc}") from None
        if not raw.endswith(b"\n"):
            raise AgiHangup("connection closed")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def _digit(self, reply: AgiReply, what: str) -> str | None:
        value = reply.value
        if value < 0:
            raise AgiHangup(f"{what} failed: channel gone") if self.hung_up else AgiError(f"{what} failed")
        return chr(value) if value else None

    async def set_variable(self, name: str, value: str) -> None:
        if not _VAR_NAME.match(name):
            raise ValueError(f"invalid channel variable name {name!r}")
        await self.command("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        if not _VAR_NAME.match(name):
            raise ValueError(f"invalid channel variable name {name!r}")
        reply = await self.command("GET VARIABLE", name)
        return reply.data if reply.result == "1" else None

    async def answer(self) -> None:
        if (await self.command("ANSWER")).value < 0:
            raise AgiHangup("ANSWER failed")

    async def stream_file(self, sound: str, escape_digits: str = "") -> str | None:
        """Play one sound; the digit that interrupted it, or None.

        Asterisk answers -1 both for a missing sound and a channel that hung up while
        playing; the first is reported as AgiError, the second as AgiHangup (by the
        HANGUP line, or by 511 on the next command).
        """
        return self._digit(await self.command("STREAM FILE", sound, escape_digits), f"STREAM FILE {sound}")

    async def play(self, sounds: tuple[str, ...], escape_digits: str = "") -> str | None:
        """Play sounds in turn; stop at the first escape digit pressed and return it.
        A sound that cannot be played is logged and skipped."""
        for sound in sounds:
            try:
                digit = await self.stream_file(sound, escape_digits)
            except AgiHangup:
                raise
            except AgiError as exc:
                _log.warning("agi_sound_failed", sound=sound, error=str(exc), channel=self.uniqueid)
                continue
            if digit:
                return digit
        return None

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return self._digit(await self.command("WAIT FOR DIGIT", int(timeout_ms)), "WAIT FOR DIGIT")

    async def get_data(self, sound: str, timeout_ms: int, max_digits: int) -> str:
        """Play `sound` and collect up to `max_digits` digits ('' when none)."""
        reply = await self.command("GET DATA", sound, int(timeout_ms), int(max_digits))
        if reply.result == "-1":
            raise AgiHangup("GET DATA failed")
        return reply.result

    async def exec(self, application: str, *args: str) -> int:
        """Run a dialplan application; its return value (-2 = no such application)."""
        return (await self.command("EXEC", application, ",".join(args))).value

    async def hangup(self) -> None:
        await self.command("HANGUP")
        self.hung_up = True
