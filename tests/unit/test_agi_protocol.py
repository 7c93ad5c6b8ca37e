"""FastAGI protocol layer against a scripted peer playing Asterisk over a socket pair,
the server's resilience to garbage over real TCP, and the scripts' pure decisions."""

from __future__ import annotations

import asyncio
import re
import socket

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.agi import AgiError, AgiHangup, AgiServer, AgiSession, default_handlers
from hitcall_pbx.agi.protocol import MAX_ENV_LINES, MAX_LINE, AgiReply, format_command, parse_reply
from hitcall_pbx.agi.scripts import (
    CallerContact,
    MenuAction,
    caller_number,
    identification,
    lookup_variables,
    menu_action,
)

ENV = (
    "agi_network: yes\n"
    "agi_network_script: optout?x=1\n"
    "agi_request: agi://127.0.0.1:4573/optout?x=1\n"
    "agi_channel: Local/0291234567@hitcall-inbound-00000001;2\n"
    "agi_uniqueid: t-1;2\n"
    "agi_callerid: +358401234567\n"
    "agi_calleridname: unknown\n"
    "agi_extension: 0291234567\n"
    "agi_accountcode:\n"
    "agi_arg_1: first\n"
    "agi_arg_2: second arg\n"
    "\n"
)

SECRET = "unit-test-agi-secret-0123"


class FakeAsterisk:
    """The Asterisk end of a socket pair: writes raw bytes, reads command lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, text: str | bytes) -> None:
        self.writer.write(text.encode() if isinstance(text, str) else text)
        await self.writer.drain()

    async def command(self) -> str:
        return (await self.reader.readline()).decode().rstrip("\n")


@pytest.fixture
async def pair():
    a, b = socket.socketpair()
    sr, sw = await asyncio.open_connection(sock=a, limit=MAX_LINE)
    pr, pw = await asyncio.open_connection(sock=b)
    yield (sr, sw), FakeAsterisk(pr, pw)
    for w in (sw, pw):
        w.close()


# ------------------------------------------------------------------- replies ---
@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("200 result=1", AgiReply(200, "1")),
        ("200 result=0 endpos=18240", AgiReply(200, "0", None, {"endpos": "18240"})),
        ("200 result= (timeout)", AgiReply(200, "", "timeout")),
        ("200 result=12 (timeout)", AgiReply(200, "12", "timeout")),
        ("200 result=1 (a value (with) parens)", AgiReply(200, "1", "a value (with) parens")),
        ("200 result=-1 endpos=0", AgiReply(200, "-1", None, {"endpos": "0"})),
    ],
)
def test_success_replies_are_parsed(line, reply):
    assert parse_reply(line) == reply


def test_dead_channel_refused_and_garbage_replies():
    with pytest.raises(AgiHangup):
        parse_reply("511 Command Not Permitted on a dead channel or intercept routine")
    for line in ("510 Invalid or unknown command", "520 End of proper usage.", "hello", "200 ok", ""):
        with pytest.raises(AgiError) as err:
            parse_reply(line)
        assert not isinstance(err.value, AgiHangup)
    with pytest.raises(AgiError):
        _ = AgiReply(200, "abc").value


@given(st.text(max_size=200))
def test_an_argument_never_breaks_out_of_its_command_line(value):
    wire = format_command("SET VARIABLE", "NAME", value)
    assert wire.endswith(b"\n") and wire.count(b"\n") == 1
    quoted = wire.decode()[len('SET VARIABLE "NAME" ') : -1]
    assert quoted.startswith('"') and quoted.endswith('"')
    unquoted = re.sub(r"\\(.)", r"\1", quoted[1:-1])
    assert unquoted == re.sub(r"[\x00-\x1f\x7f]", " ", value)


def test_command_words_are_fixed():
    assert format_command("GET DATA", "beep", 3000, 1) == b'GET DATA "beep" 3000 1\n'
    with pytest.raises(ValueError):
        format_command("HANGUP\nEXEC System")


# ------------------------------------------------------------------- session ---
async def test_environment_and_commands_over_the_socket(pair):
    (reader, writer), peer = pair
    await peer.send(ENV)
    agi = await AgiSession.open(reader, writer)
    assert agi.script == "optout"
    assert agi.args == ["first", "second arg"]
    assert agi.caller_id == "+358401234567" and agi.extension == "0291234567" and agi.uniqueid == "t-1;2"
    assert agi.env["agi_accountcode"] == ""

    async def asterisk():
        assert await peer.command() == 'SET VARIABLE "HITCALL_CONTACT_NAME" "Matti \\"M\\" Meik\u00e4l\u00e4inen "'
        await peer.send("200 result=1\n")
        assert await peer.command() == 'STREAM FILE "hello-world" "12"'
        await peer.send("200 result=50 endpos=4000\n")
        assert await peer.command() == 'GET DATA "beep" 5000 4'
        await peer.send("200 result=12 (timeout)\n")
        assert await peer.command() == "WAIT FOR DIGIT 2000"
        await peer.send("200 result=0\n")
        assert await peer.command() == 'GET VARIABLE "HITCALL_ROUTE"'
        await peer.send("200 result=1 (agent)\n")
        assert await peer.command() == 'EXEC "Playback" "beep,noanswer"'
        await peer.send("200 result=0\n")

    task = asyncio.create_task(asterisk())
    await agi.set_variable("HITCALL_CONTACT_NAME", 'Matti "M" Meikäläinen\n')
    assert await agi.stream_file("hello-world", "12") == "2"
    assert await agi.get_data("beep", 5000, 4) == "12"
    assert await agi.wait_for_digit(2000) is None
    assert await agi.get_variable("HITCALL_ROUTE") == "agent"
    assert await agi.exec("Playback", "beep", "noanswer") == 0
    await task
    with pytest.raises(ValueError):
        await agi.set_variable("BAD NAME", "x")


async def test_hangup_notification_usage_error_and_dead_channel(pair):
    (reader, writer), peer = pair
    await peer.send(ENV)
    agi = await AgiSession.open(reader, writer)

    await peer.send(
        "520-Invalid command syntax.  Proper usage follows:\nUsage: GET DATA <file>\n520 End of proper usage.\n"
    )
    with pytest.raises(AgiError) as err:
        await agi.command("GET DATA")
    assert not isinstance(err.value, AgiHangup)
    assert await peer.command() == "GET DATA"

    await peer.send("HANGUP\n200 result=-1 endpos=100\n")  # hung up while playing
    with pytest.raises(AgiHangup):
        await agi.stream_file("hello-world")
    assert agi.hung_up

    await peer.send("511 Command Not Permitted on a dead channel or intercept routine\n")
    with pytest.raises(AgiHangup):
        await agi.wait_for_digit(1000)


async def test_missing_sound_is_skipped_by_play(pair):
    (reader, writer), peer = pair
    await peer.send(ENV)
    agi = await AgiSession.open(reader, writer)
    await peer.send("200 result=-1 endpos=0\n200 result=49 endpos=10\n")
    assert await agi.play(("no-such-sound", "hello-world"), "1") == "1"
    assert not agi.hung_up


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"agi_request: agi://x/optout\nnot an env line\n\n", AgiError),
        (b"agi_request: agi://x/optout\n", AgiHangup),  # closed before the blank line
        (b"agi_request: " + b"x" * (MAX_LINE + 10) + b"\n\n", AgiError),
        (b"".join(b"agi_v%d: x\n" % i for i in range(MAX_ENV_LINES + 1)) + b"\n", AgiError),
        (b"agi_channel: SIP/1\n\n", AgiError),  # no request
        (b"\xff\xfe\x00\x01\n\n", AgiError),
    ],
)
async def test_bad_environment_is_an_error_not_a_crash(pair, data, error):
    (reader, writer), peer = pair
    await peer.send(data)
    if error is AgiHangup:
        peer.writer.close()
    with pytest.raises(error):
        await AgiSession.open(reader, writer)


async def test_reply_timeout(pair):
    (reader, writer), peer = pair
    await peer.send(ENV)
    agi = await AgiSession.open(reader, writer, reply_timeout=0.05)
    with pytest.raises(TimeoutError):
        await agi.command("ANSWER")


# -------------------------------------------------------------------- server ---
async def test_server_survives_garbage_and_serves_the_next_call():
    served: list[str | None] = []

    async def script(agi: AgiSession, pool) -> None:
        await agi.set_variable("SEEN", agi.caller_id or "")
        served.append(agi.caller_id)

    async def boom(agi: AgiSession, pool) -> None:
        raise RuntimeError("handler bug")

    server = AgiServer(
        None,  # type: ignore[arg-type]  # no pool: these scripts never touch the database
        "127.0.0.1",
        0,
        {"ok": script, "boom": boom},
        secret=SECRET,
        env_timeout=0.3,
        session_timeout=2,
    )
    await server.start()

    async def talk(payload: bytes, *, close: bool = True) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(payload)
        await writer.drain()
        if close:
            writer.write_eof()
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return data

    try:
        await talk(b"\x00garbage\r\n" * 10)
        await talk(b"agi_request: agi://h/ok\n")  # disconnects before the blank line
        await talk(b"a" * (MAX_LINE * 4))  # one endless line
        await talk(b"agi_request: agi://h/", close=False)  # never finishes: env timeout
        await talk(b"agi_network_script: nosuch?secret=" + SECRET.encode() + b"\n\n")
        await talk(b"agi_network_script: boom?secret=" + SECRET.encode() + b"\n\n")
        # The server is still up and a proper session works.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network_script: ok?secret=" + SECRET.encode() + b"\nagi_callerid: +358401234567\n\n")
        assert await reader.readline() == b'SET VARIABLE "SEEN" "+358401234567"\n'
        writer.write(b"200 result=1\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closes when done
        writer.close()
        assert served == ["+358401234567"]
    finally:
        await server.close()


async def test_close_ends_running_sessions():
    started = asyncio.Event()

    async def slow(agi: AgiSession, pool) -> None:
        started.set()
        await agi.wait_for_digit(60000)

    server = AgiServer(None, "127.0.0.1", 0, {"slow": slow}, secret=SECRET)  # type: ignore[arg-type]  # no pool: the script never touches the database
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network_script: slow?secret=" + SECRET.encode() + b"\n\n")
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(server.close(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b"WAIT FOR DIGIT 60000\n"
    writer.close()


async def test_optout_line_with_database_down_routes_the_caller_to_an_agent():
    """Pressing 1 while Postgres is unreachable must not drop the request silently."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    pool = await asyncpg.create_pool(f"postgresql://x@127.0.0.1:{dead_port}/x", min_size=0)
    server = AgiServer(pool, "127.0.0.1", 0, default_handlers(), secret=SECRET)
    await server.start()
    commands: list[str] = []
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"agi_network_script: optout?secret=" + SECRET.encode() + b"\n"
            b"agi_callerid: +358401234567\nagi_extension: 0291234567\n\n"
        )
        while line := (await asyncio.wait_for(reader.readline(), 10)).decode().rstrip("\n"):
            commands.append(line)
            pressed_1 = line.startswith('STREAM FILE "hello-world"')
            writer.write(b"200 result=49 endpos=10\n" if pressed_1 else b"200 result=0\n")
        writer.close()
    finally:
        await server.close()
        await pool.close()
    assert commands[0] == 'SET VARIABLE "HITCALL_CONTACT_FOUND" "0"'
    assert commands[-3:] == [
        'STREAM FILE "hello-world" "12"',
        'SET VARIABLE "HITCALL_ROUTE" "agent"',
        'STREAM FILE "pls-hold-while-try" ""',
    ]


# ------------------------------------------------------------ pure decisions ---
def test_menu_actions():
    assert menu_action("1", 1, max_tries=3, caller_known=True) is MenuAction.OPT_OUT
    assert menu_action("2", 3, max_tries=3, caller_known=True) is MenuAction.AGENT
    assert menu_action("1", 1, max_tries=3, caller_known=False) is MenuAction.AGENT
    assert menu_action(None, 1, max_tries=3, caller_known=True) is MenuAction.RETRY
    assert menu_action("9", 2, max_tries=3, caller_known=True) is MenuAction.RETRY
    assert menu_action(None, 3, max_tries=3, caller_known=True) is MenuAction.GIVE_UP


def test_caller_number_and_identification():
    assert caller_number("0401234567") == "+358401234567"
    assert caller_number("+358401234567") == "+358401234567"
    assert caller_number(None) is None and caller_number("anonymous") is None and caller_number("12") is None
    assert identification("sound:acme-intro", ("hello-world",)) == ("acme-intro",)
    assert identification("recording:acme", ("hello-world",)) == ("hello-world",)
    assert identification(None, ("hello-world",)) == ("hello-world",)


def test_lookup_variables_found_and_unknown():
    found = lookup_variables(CallerContact(7, "Maija", "crm-7", 3, 2, "Spring"))
    assert found == {
        "HITCALL_CONTACT_FOUND": "1",
        "HITCALL_CONTACT_ID": "7",
        "HITCALL_CONTACT_NAME": "Maija",
        "HITCALL_CONTACT_EXTERNAL_ID": "crm-7",
        "HITCALL_LIST_ID": "3",
        "HITCALL_CAMPAIGN": "2",
        "HITCALL_CAMPAIGN_NAME": "Spring",
    }
    unknown = lookup_variables(None)
    assert unknown["HITCALL_CONTACT_FOUND"] == "0" and set(unknown) == set(found)
    assert all(v == "" for k, v in unknown.items() if k != "HITCALL_CONTACT_FOUND")
