"""Data-subject rights round trips on real Postgres."""

from __future__ import annotations

import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hitcall_pbx.api.deps import Rectification, SubjectRef
from hitcall_pbx.auth import Actor
from hitcall_pbx.core.compliance import DialContext, DialReason, check_dial, salted_number_hash
from hitcall_pbx.core.retention import RetentionPolicy, add_months
from hitcall_pbx.errors import Conflict, NotFound, ValidationFailed
from hitcall_pbx.hooks.events import enqueue
from hitcall_pbx.privacy.api import ApiPrivacy
from hitcall_pbx.privacy.service import PrivacyService
from hitcall_pbx.records.cdr import CdrRecord, write_cdrs
from hitcall_pbx.records.recordings import RecordingStore
from hitcall_pbx.records.retention_ops import RetentionOps

NUMBER = "+358401234567"
OTHER = "+358409876543"
NOW = datetime.now(UTC)
DPO = Actor("dpo", "compliance", "10.0.0.9")
SUPERVISOR = Actor("sue", "supervisor")


@pytest.fixture
def store(tmp_path: Path) -> RecordingStore:
    return RecordingStore(tmp_path / "store")


@pytest.fixture
def privacy(db, store) -> PrivacyService:
    return PrivacyService(db, store)


async def seed(db, store: RecordingStore, tmp: Path, *, number: str = NUMBER, email: str = "Maija.M@example.fi"):
    """A person on two lists (one reached by e-mail only), a DNC entry, two calls, one recorded."""
    campaign = await db.fetchval(
        "INSERT INTO campaigns (name, mode) VALUES ($1, 'preview') RETURNING id", f"c-{uuid.uuid4().hex[:6]}"
    )
    lists = [
        await db.fetchval("INSERT INTO contact_lists (name) VALUES ($1) RETURNING id", f"l-{uuid.uuid4().hex}")
        for _ in range(2)
    ]
    await db.execute("INSERT INTO campaign_lists (campaign_id, list_id) VALUES ($1, $2)", campaign, lists[0])
    c1 = await db.fetchval(
        """INSERT INTO contacts (list_id, phone_e164, name, email, marketing_permission, external_id)
           VALUES ($1, $2, 'Maija Meikäläinen', $3, true, 'crm-1') RETURNING id""",
        lists[0],
        number,
        email,
    )
    c2 = await db.fetchval(
        "INSERT INTO contacts (list_id, phone_e164, name) VALUES ($1, $2, 'M. M.') RETURNING id", lists[1], number
    )
    await db.execute(
        "INSERT INTO dnc_entries (phone_e164, campaign_id, reason, source) VALUES ($1, $2, 'asked', 'agent')",
        number,
        campaign,
    )
    attempts = []
    for days in (30, 3):
        a = uuid.uuid4()
        created = NOW - timedelta(days=days)
        await db.execute(
            """INSERT INTO call_attempts (id, campaign_id, contact_id, dialled_number, caller_id, mode, created_at,
                                          retention_until, state, ended_at, outcome)
               VALUES ($1, $2, $3, $4, '+358931234567', 'preview', $5, $6, 'ended', $5, 'answered_human')""",
            a,
            campaign,
            c1,
            number,
            created,
            add_months(created, 24),
        )
        attempts.append(a)
    source = tmp / "call.sln"
    audio = bytes(range(256)) * 64
    source.write_bytes(audio)
    rec = await store.finalize(
        db,
        source_path=source,
        recording_id=uuid.uuid4(),
        attempt_id=attempts[0],
        campaign_id=campaign,
        call_at=NOW - timedelta(days=30),
        policy=RetentionPolicy(),
        format="sln",
    )
    return {"campaign": campaign, "contacts": [c1, c2], "attempts": attempts, "recording": rec, "audio": audio}


def dumped(value) -> str:
    return json.dumps(value, default=str)


async def test_export_contains_everything_stored(db, store, privacy, tmp_path):
    s = await seed(db, store, tmp_path)
    out = await privacy.export("040 1234567", actor=DPO)
    data = out.data
    assert out.archive is None
    assert data["subject"] == {"type": "phone", "value": NUMBER}
    assert sorted(c["id"] for c in data["contacts"]) == sorted(s["contacts"])
    first = next(c for c in data["contacts"] if c["id"] == s["contacts"][0])
    assert first["name"] == "Maija Meikäläinen" and first["email"] == "Maija.M@example.fi"
    assert {
        "contact_id": s["contacts"][0],
        "marketing_permission": True,
        "marketing_prohibited": False,
        "processing_restricted": False,
    } in data["permissions"]
    assert [d["source"] for d in data["do_not_call"]] == ["agent"]
    assert sorted(a["id"] for a in data["call_attempts"]) == sorted(map(str, s["attempts"]))
    assert data["recordings"][0]["id"] == str(s["recording"].id)
    assert data["recordings"][0]["sha256"] == s["recording"].sha256
    assert "path" not in data["recordings"][0]
    json.dumps(data)  # machine-readable as it is
    row = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'subject.export'")
    assert (row["actor"], row["actor_role"], str(row["source_ip"])) == ("dpo", "compliance", "10.0.0.9")
    assert NUMBER not in dumped(dict(row)) and "Maija" not in dumped(dict(row))

    by_email = await privacy.export("maija.m@EXAMPLE.fi", actor=DPO)
    assert by_email.data["subject"]["type"] == "email"
    assert [c["id"] for c in by_email.data["contacts"]] == [s["contacts"][0]]
    assert len(by_email.data["call_attempts"]) == 2


async def test_export_with_audio_is_a_zip_of_the_json_and_the_files(db, store, tmp_path):
    s = await seed(db, store, tmp_path)
    exports = tmp_path / "exports"
    exports.mkdir()
    out = await PrivacyService(db, store, export_dir=exports).export(NUMBER, actor=DPO, include_audio=True)
    assert out.archive.parent == exports and out.archive.stat().st_mode & 0o777 == 0o600
    with zipfile.ZipFile(out.archive) as z:
        inside = json.loads(z.read("export.json"))
        name = inside["recordings"][0]["audio_file"]
        assert name == f"recordings/{s['recording'].id}.sln"
        assert z.read(name) == s["audio"]
    assert sorted(a["id"] for a in inside["call_attempts"]) == sorted(map(str, s["attempts"]))


async def test_erase_then_export_shows_nothing_personal_and_the_number_stays_blocked(db, store, privacy, tmp_path):
    s = await seed(db, store, tmp_path)
    keep = await seed(db, store, tmp_path, number=OTHER, email="other@example.fi")
    async with db.acquire() as conn:
        # Events that name the person (by attempt, by contact, by number) and one that does not.
        await enqueue(conn, "call.ended", f"attempt:{s['attempts'][0]}", {"dialled_number": NUMBER})
        await enqueue(conn, "call.answered", f"attempt:{s['attempts'][1]}", {"agent_id": 1})
        await enqueue(conn, "contact.opted_out", f"contact:{s['contacts'][1]}", {"list_id": 1})
        await enqueue(conn, "contact.opted_out", "number:x", {"number": NUMBER})
        await enqueue(conn, "call.ended", f"attempt:{keep['attempts'][0]}", {"dialled_number": OTHER})
    file = store.absolute(s["recording"].path)
    report = await privacy.erase(NUMBER, actor=DPO)
    assert report.webhook_events_deleted == 4
    left = await db.fetch("SELECT subject FROM webhook_outbox WHERE event_type NOT LIKE 'recording.%' ORDER BY id")
    assert [r["subject"] for r in left] == [f"attempt:{keep['attempts'][0]}"]
    assert sorted(report.contacts_deleted) == sorted(s["contacts"])
    assert report.attempts_anonymised == 2 and report.recordings_deleted == [str(s["recording"].id)]
    assert report.recordings_retained == [] and report.dnc_entries_deleted == 1
    assert report.suppression_hashes_added == 1
    assert not file.exists()
    rec = await db.fetchrow("SELECT * FROM recordings WHERE id = $1", s["recording"].id)
    assert rec["purge_reason"] == "erasure"
    attempts = await db.fetch("SELECT * FROM call_attempts WHERE id = ANY($1::uuid[])", s["attempts"])
    assert all(a["dialled_number"] is None and a["contact_id"] is None and a["anonymised_at"] for a in attempts)

    after = await privacy.export(NUMBER, actor=DPO)
    assert after.data["suppressed"] is True
    assert (
        after.data["contacts"],
        after.data["call_attempts"],
        after.data["recordings"],
        after.data["do_not_call"],
    ) == ([], [], [], [])
    assert "Maija" not in dumped(after.data)

    salt = bytes(await db.fetchval("SELECT suppression_salt FROM installation"))
    assert (
        await db.fetchval("SELECT count(*) FROM suppression_hashes WHERE hash = $1", salted_number_hash(NUMBER, salt))
        == 1
    )
    assert await privacy.is_suppressed("0401234567") and not await privacy.is_suppressed(OTHER)
    verdict = check_dial(
        DialContext(phone=NUMBER, now=NOW, max_attempts=3, suppressed=await privacy.is_suppressed(NUMBER))
    )
    assert not verdict.allowed and verdict.reason is DialReason.SUPPRESSED
    # The other person is untouched; nothing in the audit log names the erased one.
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE phone_e164 = $1", OTHER) == 2
    assert store.absolute(keep["recording"].path).exists()
    audit_rows = await db.fetch("SELECT * FROM audit_log")
    assert NUMBER not in dumped([dict(r) for r in audit_rows])
    assert "Maija" not in dumped([dict(r) for r in audit_rows])
    erase_row = next(r for r in audit_rows if r["action"] == "subject.erase")
    assert erase_row["object_id"] == salted_number_hash(NUMBER, salt)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM webhook_outbox"
            " WHERE event_type = 'recording.purged' AND payload->>'reason' = 'erasure'"
        )
        == 1
    )


async def test_erasure_during_a_call_reaches_the_cdr_written_after_it(db, store, privacy, tmp_path):
    """The person is erased while their call is live; the call's CDR, written later from
    the dialer's memory (which still holds the number), is stored anonymised."""
    s = await seed(db, store, tmp_path)
    live = uuid.uuid4()
    await db.execute(
        """INSERT INTO live_attempts (id, campaign_id, contact_id, dialled_number, caller_id, mode, state, created_at,
                                      retention_until)
           VALUES ($1, $2, $3, $4, '+358931234567', 'preview', 'bridged', $5, $6)""",
        live,
        s["campaign"],
        s["contacts"][0],
        NUMBER,
        NOW,
        add_months(NOW, 24),
    )
    exported = await privacy.export(NUMBER, actor=DPO)
    assert str(live) in {a["id"] for a in exported.data["call_attempts"]}  # a live call is held data too
    report = await privacy.erase(NUMBER, actor=DPO)
    assert report.attempts_anonymised == 3
    record = CdrRecord(
        id=live,
        campaign_id=s["campaign"],
        contact_id=s["contacts"][0],
        dialled_number=NUMBER,
        caller_id="+358931234567",
        mode="preview",
        created_at=NOW,
        answered_at=NOW,
        bridged_at=NOW,
        ended_at=NOW + timedelta(seconds=30),
        outcome="answered_human",
        retention_until=add_months(NOW, 24),
    )
    async with db.acquire() as conn:
        await write_cdrs(conn, [record])
    row = await db.fetchrow("SELECT * FROM call_attempts WHERE id = $1", live)
    assert row["dialled_number"] is None and row["contact_id"] is None and row["anonymised_at"] is not None
    assert await db.fetchval("SELECT count(*) FROM live_attempts") == 0


async def test_erase_keeps_a_held_recording_and_says_why(db, store, privacy, tmp_path):
    s = await seed(db, store, tmp_path)
    until = NOW + timedelta(days=200)
    await RetentionOps(db, store).hold(
        s["recording"].id, until=until, reason="complaint: mis-selling", case_id="CASE-42", actor=DPO
    )
    report = await privacy.erase(NUMBER, actor=DPO)
    assert report.recordings_deleted == []
    assert report.recordings_retained == [
        {
            "recording_id": str(s["recording"].id),
            "reason": "complaint_hold",
            "hold_reason": "complaint: mis-selling",
            "case_id": "CASE-42",
            "held_until": until.isoformat(),
        }
    ]
    assert report.attempts_retained == [str(s["attempts"][0])] and report.attempts_anonymised == 1
    assert store.absolute(s["recording"].path).exists()
    assert await db.fetchval("SELECT count(*) FROM contacts") == 0
    assert await privacy.is_suppressed(NUMBER)


async def test_rectify_validates_and_audits_field_names_only(db, store, privacy, tmp_path):
    s = await seed(db, store, tmp_path)
    cid = s["contacts"][0]
    row = await privacy.rectify(
        cid,
        {
            "name": " Maija Virtanen ",
            "email": "maija.v@example.fi",
            "timezone": "Europe/Stockholm",
            "phone_e164": "+46 70 123 45 67",
        },
        actor=SUPERVISOR,
    )
    assert (row["name"], row["email"], row["timezone"], row["phone_e164"]) == (
        "Maija Virtanen",
        "maija.v@example.fi",
        "Europe/Stockholm",
        "+46701234567",
    )
    audit_row = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'subject.rectify'")
    assert audit_row["object_id"] == str(cid)
    assert audit_row["details"]["fields"] == ["email", "name", "phone_e164", "timezone"]
    assert "Virtanen" not in dumped(dict(audit_row))

    before = dict(await db.fetchrow("SELECT * FROM contacts WHERE id = $1", cid))
    for changes, field in [
        ({"email": "not-an-email"}, "email"),
        ({"phone_e164": "12"}, "phone_e164"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"status": "done"}, "status"),
        ({"name": 5}, "name"),
        ({}, "changes"),
    ]:
        with pytest.raises(ValidationFailed) as err:
            await privacy.rectify(cid, changes, actor=SUPERVISOR)
        assert err.value.details["field"] == field
    with pytest.raises(NotFound):
        await privacy.rectify(999999, {"name": "x"}, actor=SUPERVISOR)
    await db.execute("INSERT INTO contacts (list_id, phone_e164) VALUES ($1, $2)", before["list_id"], OTHER)
    with pytest.raises(Conflict) as err:
        await privacy.rectify(cid, {"phone_e164": OTHER}, actor=SUPERVISOR)
    assert err.value.details["field"] == "phone_e164"
    assert dict(await db.fetchrow("SELECT * FROM contacts WHERE id = $1", cid)) == before
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'subject.rectify'") == 1


async def test_restrict_flags_every_contact_and_can_be_lifted(db, store, privacy, tmp_path):
    s = await seed(db, store, tmp_path)
    assert sorted(await privacy.restrict(NUMBER, actor=DPO)) == sorted(s["contacts"])
    flags = await db.fetch("SELECT processing_restricted FROM contacts")
    assert all(f["processing_restricted"] for f in flags)
    verdict = check_dial(DialContext(phone=NUMBER, now=NOW, max_attempts=3, processing_restricted=True))
    assert verdict.reason is DialReason.PROCESSING_RESTRICTED
    await privacy.restrict(NUMBER, actor=DPO, on=False)
    assert not any(f["processing_restricted"] for f in await db.fetch("SELECT processing_restricted FROM contacts"))
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log WHERE object_type = 'subject'")]
    assert actions == ["subject.restrict", "subject.unrestrict"]


async def test_objection_prohibits_marketing_everywhere_before_the_next_dial(db, store, privacy, tmp_path):
    s = await seed(db, store, tmp_path)
    assert sorted(await privacy.object(NUMBER, actor=DPO)) == sorted(s["contacts"])
    rows = await db.fetch("SELECT * FROM contacts ORDER BY id")
    assert all(r["marketing_prohibited"] and not r["marketing_permission"] and r["status"] == "dnc" for r in rows)
    dnc = await db.fetchrow("SELECT * FROM dnc_entries WHERE phone_e164 = $1 AND campaign_id IS NULL", NUMBER)
    assert dnc["source"] == "subject_request"
    events = await db.fetch("SELECT * FROM webhook_outbox WHERE event_type = 'contact.opted_out' ORDER BY id")
    assert [e["payload"]["contact_id"] for e in events] == sorted(s["contacts"])
    assert events[0]["payload"]["external_id"] == "crm-1"
    verdict = check_dial(
        DialContext(
            phone=NUMBER,
            now=NOW,
            max_attempts=3,
            dnc_global=dnc is not None,
            marketing_prohibited=rows[0]["marketing_prohibited"],
        )
    )
    assert not verdict.allowed and verdict.final
    await privacy.object(NUMBER, actor=DPO)  # again: no duplicate DNC entry
    assert await db.fetchval("SELECT count(*) FROM dnc_entries WHERE campaign_id IS NULL") == 1


@pytest.mark.parametrize("action", ["export", "erase", "restrict", "object"])
async def test_unknown_or_invalid_subject_is_refused_and_changes_nothing(db, store, privacy, tmp_path, action):
    await seed(db, store, tmp_path)
    before = await db.fetchval("SELECT count(*) FROM audit_log")
    with pytest.raises(NotFound) as err:
        await getattr(privacy, action)(OTHER, actor=DPO)
    assert err.value.details["field"] == "subject"
    with pytest.raises(NotFound):
        await getattr(privacy, action)("nobody@example.fi", actor=DPO)
    for bad in ("not a number", "", "a@b"):
        with pytest.raises(ValidationFailed) as err:
            await getattr(privacy, action)(bad, actor=DPO)
        assert err.value.details["field"] == "subject"
    assert await db.fetchval("SELECT count(*) FROM audit_log") == before
    assert await db.fetchval("SELECT count(*) FROM contacts") == 2


async def test_api_adapter_serves_the_rest_layer_protocol(db, store, privacy, tmp_path):
    s = await seed(db, store, tmp_path)
    api = ApiPrivacy(privacy)
    ref = SubjectRef(phone="040 1234567")
    exported = await api.export(ref, include_audio=False, actor=DPO)
    assert exported.archive is None and len(exported.data["contacts"]) == 2

    result = await api.rectify(ref, Rectification(name="Maija V.", timezone="Europe/Helsinki"), actor=DPO)
    assert (result.action, result.contacts) == ("rectify", 2)
    assert {r["name"] for r in await db.fetch("SELECT name FROM contacts")} == {"Maija V."}

    assert (await api.restrict(ref, True, actor=DPO)).contacts == 2
    assert (await api.object_to_marketing(SubjectRef(email="maija.m@example.fi"), actor=DPO)).contacts == 1

    await RetentionOps(db, store).hold(s["recording"].id, until=None, reason="complaint", case_id="K-1", actor=DPO)
    erased = await api.erase(ref, actor=DPO)
    assert (erased.contacts, erased.recordings_deleted, erased.suppressed) == (2, 0, True)
    assert erased.recordings_retained[0].recording_id == s["recording"].id
    assert "K-1" in erased.recordings_retained[0].reason
    with pytest.raises(NotFound):
        await api.rectify(SubjectRef(phone=OTHER), Rectification(name="x"), actor=DPO)
