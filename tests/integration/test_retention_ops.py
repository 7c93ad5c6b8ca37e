"""Complaint holds, release, policy change and recompute on real Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hitcall_pbx.auth import Actor
from hitcall_pbx.core.retention import RetentionPolicy, add_months
from hitcall_pbx.errors import Conflict, NotFound, ValidationFailed
from hitcall_pbx.records.purge import PurgeWorker
from hitcall_pbx.records.recordings import RecordingStore
from hitcall_pbx.records.retention_ops import RetentionOps

NOW = datetime.now(UTC)
ALICE, BOB = Actor("alice", "compliance"), Actor("bob", "compliance")
ADMIN = Actor("admin", "admin", "10.0.0.5")


@pytest.fixture
def store(tmp_path: Path) -> RecordingStore:
    return RecordingStore(tmp_path / "store")


@pytest.fixture
def ops(db, store) -> RetentionOps:
    return RetentionOps(db, store)


async def make_campaign(pool, rec_months: int = 6, cdr_months: int = 24) -> int:
    return await pool.fetchval(
        """INSERT INTO campaigns (name, mode, retention_recordings_months, retention_cdr_months)
           VALUES ($1, 'progressive', $2, $3) RETURNING id""",
        f"c-{uuid.uuid4().hex[:8]}",
        rec_months,
        cdr_months,
    )


async def make_call(
    pool, store: RecordingStore, campaign: int, call_at: datetime, policy: RetentionPolicy, tmp: Path
) -> tuple[uuid.UUID, uuid.UUID]:
    attempt = uuid.uuid4()
    await pool.execute(
        """INSERT INTO call_attempts (id, campaign_id, dialled_number, caller_id, mode, created_at, retention_until,
                                      ended_at, outcome)
           VALUES ($1, $2, '+358401234567', '+358931234567', 'progressive', $3, $4,
                   $3::timestamptz + interval '1 minute', 'no_answer')""",
        attempt,
        campaign,
        call_at,
        add_months(call_at, policy.cdr_months),
    )
    source = tmp / f"{attempt}.sln"
    source.write_bytes(b"\x01\x02" * 8000)
    rec = await store.finalize(
        pool,
        source_path=source,
        recording_id=uuid.uuid4(),
        attempt_id=attempt,
        campaign_id=campaign,
        call_at=call_at,
        policy=policy,
        format="sln",
    )
    return attempt, rec.id


async def snapshot(pool) -> tuple:
    return (
        [tuple(r) for r in await pool.fetch("SELECT * FROM recordings ORDER BY id")],
        [tuple(r) for r in await pool.fetch("SELECT * FROM campaigns ORDER BY id")],
        await pool.fetchval("SELECT count(*) FROM audit_log"),
    )


async def test_hold_keeps_a_recording_past_its_deadline_and_is_audited(db, store, ops, tmp_path):
    policy = RetentionPolicy(recordings_months=2)
    campaign = await make_campaign(db, 2)
    call_at = NOW - timedelta(days=100)  # policy deadline passed
    _, rid = await make_call(db, store, campaign, call_at, policy, tmp_path)
    until = add_months(call_at, 18)  # the longest allowed
    state = await ops.hold(rid, until=until, reason="complaint about the sale", case_id="CASE-7", actor=ALICE)
    assert (state.held_until, state.hold_case_id, state.purged) == (until, "CASE-7", False)
    assert state.retention_until == add_months(call_at, 2)  # the policy deadline is unchanged
    report = await PurgeWorker(db, store).run_once()
    assert report.recordings_purged == 0 and report.attempts_anonymised == 0
    assert store.absolute(await db.fetchval("SELECT path FROM recordings WHERE id = $1", rid)).exists()
    row = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'recording.hold'")
    assert (row["actor"], row["actor_role"], row["object_id"]) == ("alice", "compliance", str(rid))
    assert row["details"]["case_id"] == "CASE-7" and row["details"]["held_until"] == until.isoformat()


@pytest.mark.parametrize(
    ("until", "reason", "field"),
    [
        (lambda call: add_months(call, 18) + timedelta(seconds=1), "complaint", "held_until"),
        (lambda call: call - timedelta(days=1), "complaint", "held_until"),
        (lambda call: NOW - timedelta(days=1), "complaint", "held_until"),
        (lambda call: datetime(2027, 1, 1), "complaint", "held_until"),  # naive
        (lambda call: NOW + timedelta(days=30), "  ", "reason"),
    ],
)
async def test_bad_hold_is_refused_and_changes_nothing(db, store, ops, tmp_path, until, reason, field):
    campaign = await make_campaign(db)
    call_at = NOW - timedelta(days=10)
    _, rid = await make_call(db, store, campaign, call_at, RetentionPolicy(), tmp_path)
    before = await snapshot(db)
    with pytest.raises(ValidationFailed) as err:
        await ops.hold(rid, until=until(call_at), reason=reason, case_id="C-1", actor=ALICE)
    assert err.value.details["field"] == field
    assert await snapshot(db) == before


async def test_hold_without_an_end_lasts_the_longest_allowed(db, store, ops, tmp_path):
    campaign = await make_campaign(db)
    call_at = NOW - timedelta(days=3)
    _, rid = await make_call(db, store, campaign, call_at, RetentionPolicy(), tmp_path)
    state = await ops.hold(rid, until=None, reason="complaint", case_id=None, actor=ALICE)
    assert state.held_until == add_months(call_at, 18) and state.hold_case_id is None


async def test_hold_and_release_of_unknown_recording_is_not_found(db, ops):
    with pytest.raises(NotFound):
        await ops.hold(uuid.uuid4(), until=NOW + timedelta(days=1), reason="x", case_id=None, actor=ALICE)
    with pytest.raises(NotFound):
        await ops.release(uuid.uuid4(), actor=ALICE)
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_release_before_the_deadline_restores_the_policy_deadline(db, store, ops, tmp_path):
    campaign = await make_campaign(db, 6)
    call_at = NOW - timedelta(days=20)
    _, rid = await make_call(db, store, campaign, call_at, RetentionPolicy(6), tmp_path)
    await ops.hold(rid, until=NOW + timedelta(days=400), reason="complaint", case_id="C-2", actor=ALICE)
    state = await ops.release(rid, actor=BOB)
    assert (state.held_until, state.hold_reason, state.hold_case_id, state.purged) == (None, None, None, False)
    assert state.retention_until == add_months(call_at, 6)
    audit_row = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'recording.release'")
    assert audit_row["actor"] == "bob" and audit_row["details"]["purged"] is False
    with pytest.raises(Conflict):
        await ops.release(rid, actor=BOB)  # not on hold any more


async def test_release_after_the_deadline_purges_at_once(db, store, ops, tmp_path):
    campaign = await make_campaign(db, 3)
    call_at = NOW - timedelta(days=150)
    attempt, rid = await make_call(db, store, campaign, call_at, RetentionPolicy(3), tmp_path)
    path = store.absolute(await db.fetchval("SELECT path FROM recordings WHERE id = $1", rid))
    await ops.hold(rid, until=NOW + timedelta(days=30), reason="complaint", case_id="C-3", actor=ALICE)
    state = await ops.release(rid, actor=ALICE)
    assert state.purged and state.held_until is None
    assert not path.exists()
    row = await db.fetchrow("SELECT * FROM recordings WHERE id = $1", rid)
    assert row["purge_reason"] == "retention" and row["sha256"]  # tombstone keeps the metadata
    assert (
        await db.fetchval(
            "SELECT count(*) FROM webhook_outbox WHERE event_type = 'recording.purged' AND subject = $1",
            f"recording:{rid}",
        )
        == 1
    )
    with pytest.raises(Conflict):
        await ops.hold(rid, until=NOW + timedelta(days=30), reason="again", case_id=None, actor=ALICE)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"recordings_months": 1}, "recordings_months"),
        ({"recordings_months": 7}, "recordings_months"),
        ({"cdr_months": 0}, "cdr_months"),
        ({"cdr_months": 121}, "cdr_months"),
    ],
)
async def test_policy_outside_the_limits_is_refused_and_changes_nothing(db, ops, kwargs, field):
    campaign = await make_campaign(db)
    before = await snapshot(db)
    with pytest.raises(ValidationFailed) as err:
        await ops.change_policy(campaign, actor=ADMIN, **kwargs)
    assert err.value.details["field"] == field
    assert await snapshot(db) == before


async def test_policy_change_never_touches_stamped_deadlines_until_recompute(db, store, ops, tmp_path):
    campaign = await make_campaign(db, 6, 24)
    call_at = NOW - timedelta(days=5)
    attempt, rid = await make_call(db, store, campaign, call_at, RetentionPolicy(6, 24), tmp_path)
    with pytest.raises(NotFound):
        await ops.change_policy(999999, recordings_months=3, actor=ADMIN)

    change = await ops.change_policy(campaign, recordings_months=3, cdr_months=1, actor=ADMIN)
    assert change.previous == RetentionPolicy(6, 24) and change.policy == RetentionPolicy(3, 1)
    assert await db.fetchval("SELECT retention_until FROM recordings WHERE id = $1", rid) == add_months(call_at, 6)
    assert await db.fetchval("SELECT retention_until FROM call_attempts WHERE id = $1", attempt) == add_months(
        call_at, 24
    )
    row = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'campaign.retention_policy'")
    assert row["details"]["previous"]["recordings_months"] == 6 and row["details"]["policy"]["cdr_months"] == 1

    report = await ops.recompute(campaign, actor=ADMIN)
    assert (report.recordings_changed, report.recordings_shortened) == (1, 1)
    assert (report.attempts_changed, report.attempts_shortened) == (1, 1)
    assert await db.fetchval("SELECT retention_until FROM recordings WHERE id = $1", rid) == add_months(call_at, 3)
    # A 1-month CDR policy still keeps the row for the 2-month minimum.
    assert await db.fetchval("SELECT retention_until FROM call_attempts WHERE id = $1", attempt) == add_months(
        call_at, 2
    )
    row = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'retention.recompute'")
    assert row["details"]["recordings_shortened"] == 1 and row["details"]["attempts_changed"] == 1

    again = await ops.recompute(campaign, actor=ADMIN)
    assert (again.recordings_changed, again.attempts_changed) == (0, 0)
