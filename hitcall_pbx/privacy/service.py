"""Data-subject rights for a person identified by phone number or e-mail address:
access (export), rectification, erasure, restriction of processing and objection to
direct marketing. Each is one call, one transaction, one audit row.

The audit log never names the person: its rows carry contact ids and a salted key of
the subject (for a number, the same salted hash the suppression list keeps).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import tempfile
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from ..auth import Actor
from ..core.compliance import salted_number_hash
from ..core.phone import normalize_e164, validate_timezone
from ..errors import Conflict, NotFound, Unavailable, ValidationFailed
from ..hooks.events import enqueue
from ..logs import get_logger
from ..records.cdr import ATTEMPT_TABLES
from ..records.purge import purge_recordings
from ..records.recordings import RecordingStore
from ..store import audit
from ..store.db import Connection

_log = get_logger("hitcall.privacy")

__all__ = ["ErasureReport", "PrivacyService", "Subject", "SubjectExport", "parse_subject"]

EXPORT_FORMAT = "hitcall.subject-export.v1"
EXPORT_MAX_AGE_S = 3600  # an audio export archive left in the export dir longer than this is deleted
_EXPORT_PREFIX = "hitcall-subject-"
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TEXT_FIELDS = ("name", "title", "organisation", "external_id")
RECTIFIABLE = frozenset({"phone_e164", "email", "timezone", *_TEXT_FIELDS})


@dataclass(frozen=True)
class Subject:
    kind: str  # "phone" | "email"
    value: str  # E.164 number or the address as given (matched case-insensitively)


def parse_subject(raw: object) -> Subject:
    """A phone number (any form `normalize_e164` accepts) or an e-mail address."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationFailed("subject must be a phone number or an e-mail address", details={"field": "subject"})
    text = raw.strip()
    if "@" in text:
        return Subject("email", _email(text, "subject"))
    return Subject("phone", normalize_e164(text, field="subject"))


def _email(value: str, name: str) -> str:
    if len(value) > 254 or not _EMAIL_RE.fullmatch(value):
        raise ValidationFailed("not a valid e-mail address", details={"field": name})
    return value


def _plain(value: Any) -> Any:
    """JSON-ready copy of database values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


@dataclass
class _Found:
    subject: Subject
    salt: bytes
    contacts: list[asyncpg.Record]
    numbers: list[str]
    attempts: list[asyncpg.Record]
    recordings: list[asyncpg.Record]
    dnc: list[asyncpg.Record]
    suppressed: bool
    previous_numbers: list[asyncpg.Record] = field(default_factory=list)  # contact_number_history rows
    sharing_contact_ids: list[int] = field(default_factory=list)  # other contacts holding a former number

    @property
    def contact_ids(self) -> list[int]:
        return [c["id"] for c in self.contacts]

    @property
    def key(self) -> str:
        """Salted key of the subject for audit rows."""
        if self.subject.kind == "phone":
            return salted_number_hash(self.subject.value, self.salt)
        return hmac.new(self.salt, b"email:" + self.subject.value.lower().encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SubjectExport:
    data: dict[str, Any]
    archive: Path | None = None
    """When audio was asked for: a zip (mode 0600) of ``export.json`` and
    ``recordings/<id>.<format>``. The caller deletes it after sending it."""


@dataclass
class ErasureReport:
    contacts_deleted: list[int] = field(default_factory=list)
    attempts_anonymised: int = 0
    attempts_retained: list[str] = field(default_factory=list)
    recordings_deleted: list[str] = field(default_factory=list)
    recordings_retained: list[dict[str, Any]] = field(default_factory=list)
    dnc_entries_deleted: int = 0
    webhook_events_deleted: int = 0  # undelivered or kept events that named the subject
    suppression_hashes_added: int = 0
    suppressed: bool = False  # the subject's numbers are in the suppression list
    numbers_suppressed: int = 0  # every number the subject ever had (current, former, dialled)
    # Other contacts now holding one of the subject's former numbers (maybe another person):
    # kept, but their number is suppressed too.
    contacts_sharing_numbers: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self.__dict__.items()}


class PrivacyService:
    """The five data-subject rights over the store's contacts, CDRs and recordings."""

    def __init__(self, pool: asyncpg.Pool, store: RecordingStore, *, export_dir: Path | None = None) -> None:
        self._pool = pool
        self._store = store
        self._export_dir = export_dir  # where audio exports are written (default: the temp dir)

    # -- lookup ----------------------------------------------------------------------
    @staticmethod
    async def _find(conn: Connection, raw: object, *, lock: bool = False) -> _Found:
        subject = parse_subject(raw)
        lock_clause = " FOR UPDATE" if lock else ""
        salt = bytes(await conn.fetchval("SELECT suppression_salt FROM installation"))
        if subject.kind == "phone":
            contacts = await conn.fetch(
                f"SELECT * FROM contacts WHERE phone_e164 = $1 ORDER BY id{lock_clause}", subject.value
            )
        else:
            contacts = await conn.fetch(
                f"SELECT * FROM contacts WHERE lower(email) = lower($1) ORDER BY id{lock_clause}", subject.value
            )
        primary = {c["phone_e164"] for c in contacts} | ({subject.value} if subject.kind == "phone" else set())
        ids = [c["id"] for c in contacts]
        # Every number the subject ever had: the contacts' numbers before a rectification or
        # an update (history), then the numbers their CDRs were dialled on or called from.
        history = await conn.fetch(
            """SELECT contact_id, phone_e164, replaced_at FROM contact_number_history
               WHERE contact_id = ANY($1::bigint[]) ORDER BY contact_id, replaced_at""",
            ids,
        )
        former = {h["phone_e164"] for h in history} - primary
        attempts_by_id: dict[uuid.UUID, asyncpg.Record] = {}
        while True:
            # Live attempts first (`ATTEMPT_TABLES`): a live row locked here is moved by the
            # CDR writer only after this transaction, carrying an anonymisation over to the CDR.
            # A former number may be another person's now: only its attempts of no contact count.
            # The subject's number is dialled_number on outbound rows, caller_number on inbound ones.
            for table in ATTEMPT_TABLES:
                for row in await conn.fetch(
                    f"""SELECT * FROM {table}
                        WHERE dialled_number = ANY($1::text[]) OR caller_number = ANY($1::text[])
                           OR contact_id = ANY($2::bigint[])
                           OR (contact_id IS NULL AND (dialled_number = ANY($3::text[])
                                                       OR caller_number = ANY($3::text[])))
                        ORDER BY created_at, id{lock_clause}""",
                    sorted(primary),
                    ids,
                    sorted(former),
                ):
                    attempts_by_id.setdefault(row["id"], row)
            dialled = {
                number
                for a in attempts_by_id.values()
                if a["contact_id"] in ids
                for number in (a["dialled_number"], a["caller_number"])
            }
            new = dialled - primary - former - {None}
            if not new:
                break
            former |= new
        numbers = sorted(primary | former)
        attempts = sorted(attempts_by_id.values(), key=lambda a: (a["created_at"], a["id"]))
        sharing = await conn.fetch(
            "SELECT id FROM contacts WHERE phone_e164 = ANY($1::text[]) AND id <> ALL($2::bigint[]) ORDER BY id",
            sorted(former),
            ids,
        )
        recordings = await conn.fetch(
            f"SELECT * FROM recordings WHERE attempt_id = ANY($1::uuid[]) ORDER BY created_at, id{lock_clause}",
            [a["id"] for a in attempts],
        )
        dnc = await conn.fetch("SELECT * FROM dnc_entries WHERE phone_e164 = ANY($1::text[]) ORDER BY id", numbers)
        hashes = [salted_number_hash(n, salt) for n in numbers]
        suppressed = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM suppression_hashes WHERE hash = ANY($1::text[]))", hashes
        )
        found = _Found(
            subject,
            salt,
            list(contacts),
            numbers,
            attempts,
            list(recordings),
            list(dnc),
            suppressed,
            previous_numbers=list(history),
            sharing_contact_ids=[r["id"] for r in sharing],
        )
        if not (contacts or attempts or dnc or suppressed):
            raise NotFound("no data is held about this subject", details={"field": "subject"})
        return found

    async def is_suppressed(self, phone: str) -> bool:
        """True when the number belongs to an erased subject (never to be dialled)."""
        number = normalize_e164(phone, field="phone")
        salt = bytes(await self._pool.fetchval("SELECT suppression_salt FROM installation"))
        return await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM suppression_hashes WHERE hash = $1)", salted_number_hash(number, salt)
        )

    # -- access / portability --------------------------------------------------------
    async def export(
        self,
        subject: str,
        *,
        actor: Actor,
        include_audio: bool = False,
    ) -> SubjectExport:
        """Everything held about the subject as JSON; with `include_audio`, also a zip of the
        JSON and the recordings' audio files."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            found = await self._find(conn, subject)
            lists = {
                r["id"]: r["name"]
                for r in await conn.fetch(
                    "SELECT id, name FROM contact_lists WHERE id = ANY($1::bigint[])",
                    [c["list_id"] for c in found.contacts],
                )
            }
            campaigns = {
                r["id"]: r["name"]
                for r in await conn.fetch(
                    "SELECT id, name FROM campaigns WHERE id = ANY($1::bigint[])",
                    [x["campaign_id"] for x in (*found.attempts, *found.dnc) if x["campaign_id"] is not None],
                )
            }
            data: dict[str, Any] = {
                "format": EXPORT_FORMAT,
                "exported_at": datetime.now(UTC).isoformat(),
                "subject": {"type": found.subject.kind, "value": found.subject.value},
                "contacts": [{**_plain(dict(c)), "list_name": lists.get(c["list_id"])} for c in found.contacts],
                "previous_numbers": [_plain(dict(h)) for h in found.previous_numbers],
                "permissions": [
                    {
                        "contact_id": c["id"],
                        "marketing_permission": c["marketing_permission"],
                        "marketing_prohibited": c["marketing_prohibited"],
                        "processing_restricted": c["processing_restricted"],
                    }
                    for c in found.contacts
                ],
                "do_not_call": [
                    {**_plain(dict(d)), "campaign_name": campaigns.get(d["campaign_id"])} for d in found.dnc
                ],
                "suppressed": found.suppressed,
                "call_attempts": [
                    {**_plain(dict(a)), "campaign_name": campaigns.get(a["campaign_id"])} for a in found.attempts
                ],
                "recordings": [self._recording_entry(r) for r in found.recordings],
            }
            details: dict[str, Any] = {
                "contact_ids": found.contact_ids,
                "include_audio": include_audio,
                "attempts": len(found.attempts),
                "recordings": len(found.recordings),
            }
            if not include_audio:
                # Committed with the read: the JSON is handed over only once its audit row is in.
                await audit.record(conn, **self._export_audit(actor, found, details, result="ok"))
                return SubjectExport(data)
        paths = {str(r["id"]): r["path"] for r in found.recordings}
        try:
            archive = await asyncio.to_thread(self._zip, data, paths)
        except Exception as exc:
            _log.error("subject_export_failed", subject=found.key, error=f"{type(exc).__name__}: {exc}")
            await audit.record(
                self._pool, **self._export_audit(actor, found, details, result="failed", error=type(exc).__name__)
            )
            raise Unavailable("the export archive could not be written; see the service log") from None
        audio = [rec["id"] for rec in data["recordings"] if rec["audio_file"] is not None]
        missing = [rec["id"] for rec in data["recordings"] if rec.get("audio_missing")]
        try:
            await audit.record(
                self._pool,
                **self._export_audit(
                    actor, found, {**details, "audio_recording_ids": audio, "audio_missing_ids": missing}, result="ok"
                ),
            )
        except BaseException:
            archive.unlink(missing_ok=True)  # not handed over unless audited
            raise
        return SubjectExport(data, archive)

    @staticmethod
    def _export_audit(
        actor: Actor, found: _Found, details: dict[str, Any], *, result: str, error: str | None = None
    ) -> dict[str, Any]:
        """The subject.export audit row: written once the export exists (result ok), or
        when it failed (result failed, the error's type only)."""
        extra = {"result": result} | ({"error": error} if error else {})
        return {
            **actor.audit_fields(),
            "action": "subject.export",
            "object_type": "subject",
            "object_id": found.key,
            "details": {**details, **extra},
        }

    @staticmethod
    def _recording_entry(r: asyncpg.Record) -> dict[str, Any]:
        entry = _plain({k: r[k] for k in r.keys() if k != "path"})  # noqa: SIM118 (a Record iterates values)
        entry["audio_file"] = None if r["purged_at"] is not None else f"recordings/{r['id']}.{r['format']}"
        return entry

    def _zip(self, data: dict[str, Any], paths: dict[str, str]) -> Path:
        if self._export_dir is not None:
            self._export_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._sweep_exports()
        fd, name = tempfile.mkstemp(prefix=_EXPORT_PREFIX, suffix=".zip", dir=self._export_dir)
        archive = Path(name)
        try:
            with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                for rec in data["recordings"]:
                    if rec["audio_file"] is None:
                        continue
                    source = self._store.absolute(paths[rec["id"]])
                    if source.is_file():
                        z.write(source, rec["audio_file"], compress_type=zipfile.ZIP_STORED)
                    else:
                        rec["audio_file"] = None
                        rec["audio_missing"] = True
                z.writestr("export.json", json.dumps(data, indent=2, ensure_ascii=False))
        except BaseException:
            archive.unlink(missing_ok=True)
            raise
        return archive

    def _sweep_exports(self) -> None:
        """Delete archives left behind (a transfer cut before its end, a crash): they hold
        personal data and audio, and the caller deletes the ones it sends."""
        assert self._export_dir is not None
        cutoff = datetime.now(UTC).timestamp() - EXPORT_MAX_AGE_S
        for path in self._export_dir.glob(f"{_EXPORT_PREFIX}*.zip"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass

    # -- rectification ---------------------------------------------------------------
    async def rectify(self, contact_id: int, changes: Mapping[str, Any], *, actor: Actor) -> dict[str, Any]:
        """Correct one contact's personal fields (phone_e164, email, timezone, name, title,
        organisation, external_id; None clears). Returns the contact as stored."""
        values = _validated_changes(changes)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM contacts WHERE id = $1 FOR UPDATE", contact_id)
            if row is None:
                raise NotFound("contact not found", details={"field": "contact_id", "value": contact_id})
            row, changed = await _rectify_row(conn, row, values)
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="subject.rectify",
                object_type="contact",
                object_id=contact_id,
                details={"fields": changed},
            )
        return _plain(dict(row))

    async def rectify_subject(self, subject: str, changes: Mapping[str, Any], *, actor: Actor) -> list[int]:
        """The same correction on every contact of the subject, in one transaction. Returns
        the contact ids."""
        values = _validated_changes(changes)
        async with self._pool.acquire() as conn, conn.transaction():
            found = await self._find(conn, subject, lock=True)
            if not found.contacts:
                raise NotFound("no contact data is held about this subject", details={"field": "subject"})
            changed: set[str] = set()
            for row in found.contacts:
                changed.update((await _rectify_row(conn, row, values))[1])
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="subject.rectify",
                object_type="subject",
                object_id=found.key,
                details={"contact_ids": found.contact_ids, "fields": sorted(changed)},
            )
        return found.contact_ids

    # -- erasure ---------------------------------------------------------------------
    async def erase(
        self,
        subject: str,
        *,
        actor: Actor,
        now: datetime | None = None,
    ) -> ErasureReport:
        """Delete the subject's contacts, DNC entries and recordings, anonymise their CDRs and
        keep the salted hash of every number they had in the suppression list. Recordings
        under a running complaint hold (and their CDRs) are retained and reported."""
        now = datetime.now(UTC) if now is None else now
        if now.tzinfo is None:
            raise ValidationFailed("now must be timezone-aware", details={"field": "now"})
        async with self._pool.acquire() as conn, conn.transaction():
            found = await self._find(conn, subject, lock=True)
            held = [r for r in found.recordings if r["purged_at"] is None and r["held_until"] and r["held_until"] > now]
            held_ids = {r["id"] for r in held}
            retained_attempts = {r["attempt_id"] for r in held}
            anonymise = [
                a["id"] for a in found.attempts if a["anonymised_at"] is None and a["id"] not in retained_attempts
            ]
            for table in ATTEMPT_TABLES:
                await conn.execute(
                    f"""UPDATE {table} SET dialled_number = NULL, caller_number = NULL, contact_id = NULL,
                                         anonymised_at = $2
                        WHERE id = ANY($1::uuid[])""",
                    anonymise,
                    now,
                )
            await conn.execute("DELETE FROM contacts WHERE id = ANY($1::bigint[])", found.contact_ids)
            # Another contact's record of once having had one of these numbers is a plain copy too.
            await conn.execute("DELETE FROM contact_number_history WHERE phone_e164 = ANY($1::text[])", found.numbers)
            dnc = await conn.fetchval(
                """WITH d AS (DELETE FROM dnc_entries WHERE phone_e164 = ANY($1::text[]) RETURNING 1)
                   SELECT count(*) FROM d""",
                found.numbers,
            )
            # Webhook events about the subject (its attempts, its contacts, or carrying any
            # number it ever had) go too: an erased person is not sent on to a CRM afterwards.
            events = await conn.fetchval(
                """WITH d AS (DELETE FROM webhook_outbox
                              WHERE subject = ANY($1::text[]) OR payload::text LIKE ANY($2::text[])
                                 OR payload->>'contact_id' = ANY($3::text[])
                              RETURNING 1) SELECT count(*) FROM d""",
                [f"attempt:{a}" for a in anonymise] + [f"contact:{c}" for c in found.contact_ids],
                [f'%"{n}"%' for n in found.numbers],
                [str(c) for c in found.contact_ids],
            )
            added = await conn.fetchval(
                """WITH i AS (INSERT INTO suppression_hashes (hash) SELECT unnest($1::text[])
                              ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM i""",
                [salted_number_hash(n, found.salt) for n in found.numbers],
            )
            # Files last, right before the commit, so that a failure above leaves every file.
            to_delete = [r for r in found.recordings if r["purged_at"] is None and r["id"] not in held_ids]
            deleted, failed = await purge_recordings(conn, self._store, to_delete, now=now, reason="erasure")
            if failed:
                raise Unavailable(
                    "recording files could not be deleted; nothing was erased",
                    details={"recording_ids": [str(i) for i in failed]},
                )
            report = ErasureReport(
                contacts_deleted=found.contact_ids,
                attempts_anonymised=len(anonymise),
                attempts_retained=sorted(str(a) for a in retained_attempts),
                recordings_deleted=[str(i) for i in deleted],
                recordings_retained=[
                    {
                        "recording_id": str(r["id"]),
                        "reason": "complaint_hold",
                        "hold_reason": r["hold_reason"],
                        "case_id": r["hold_case_id"],
                        "held_until": r["held_until"].isoformat(),
                    }
                    for r in held
                ],
                dnc_entries_deleted=dnc,
                webhook_events_deleted=events,
                suppression_hashes_added=added,
                suppressed=bool(found.numbers),
                numbers_suppressed=len(found.numbers),
                contacts_sharing_numbers=found.sharing_contact_ids,
            )
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="subject.erase",
                object_type="subject",
                object_id=found.key,
                details={
                    **report.as_dict(),
                    "recordings_retained": [
                        {"recording_id": r["recording_id"], "case_id": r["case_id"]} for r in report.recordings_retained
                    ],
                },
            )
        return report

    # -- restriction -----------------------------------------------------------------
    async def restrict(
        self,
        subject: str,
        *,
        actor: Actor,
        on: bool = True,
    ) -> list[int]:
        """Set (or lift) restriction of processing on the subject's contacts: kept in storage,
        never dialled. Returns the contact ids."""
        async with self._pool.acquire() as conn, conn.transaction():
            found = await self._find(conn, subject, lock=True)
            if not found.contacts:
                raise NotFound("no contact data is held about this subject", details={"field": "subject"})
            await conn.execute(
                "UPDATE contacts SET processing_restricted = $2 WHERE id = ANY($1::bigint[])", found.contact_ids, on
            )
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="subject.restrict" if on else "subject.unrestrict",
                object_type="subject",
                object_id=found.key,
                details={"contact_ids": found.contact_ids},
            )
        return found.contact_ids

    # -- objection to direct marketing -----------------------------------------------
    async def object(
        self,
        subject: str,
        *,
        actor: Actor,
    ) -> list[int]:
        """Objection to direct marketing: every contact of the subject is prohibited in all
        campaigns (contacts waiting to be dialled become ``dnc``), each number gets a global
        DNC entry, and ``contact.opted_out`` is emitted per contact. Returns the contact ids."""
        async with self._pool.acquire() as conn, conn.transaction():
            found = await self._find(conn, subject, lock=True)
            await conn.execute(
                """UPDATE contacts SET marketing_prohibited = true, marketing_permission = false,
                          status = CASE WHEN status IN ('new', 'retry', 'callback') THEN 'dnc' ELSE status END
                   WHERE id = ANY($1::bigint[])""",
                found.contact_ids,
            )
            await conn.execute(
                """INSERT INTO dnc_entries (phone_e164, reason, source)
                   SELECT unnest($1::text[]), 'objection to direct marketing', 'subject_request'
                   ON CONFLICT (phone_e164) WHERE campaign_id IS NULL DO NOTHING""",
                found.numbers,
            )
            for c in found.contacts:
                await enqueue(
                    conn,
                    "contact.opted_out",
                    f"contact:{c['id']}",
                    {
                        "contact_id": c["id"],
                        "list_id": c["list_id"],
                        "external_id": c["external_id"],
                        "scope": "all_campaigns",
                        "source": "subject_request",
                    },
                )
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="subject.object",
                object_type="subject",
                object_id=found.key,
                details={"contact_ids": found.contact_ids, "dnc_numbers": len(found.numbers)},
            )
        return found.contact_ids


async def _rectify_row(
    conn: Connection, row: asyncpg.Record, values: dict[str, Any]
) -> tuple[asyncpg.Record, list[str]]:
    changed = sorted(k for k, v in values.items() if row[k] != v)
    if not changed:
        return row, changed
    assignments = ", ".join(f"{k} = ${i}" for i, k in enumerate(changed, start=2))
    try:
        new = await conn.fetchrow(
            f"UPDATE contacts SET {assignments} WHERE id = $1 RETURNING *", row["id"], *(values[k] for k in changed)
        )
    except asyncpg.UniqueViolationError as exc:
        name = "external_id" if "external" in (exc.constraint_name or "") else "phone_e164"
        raise Conflict(f"another contact in the list has this {name}", details={"field": name}) from None
    assert new is not None  # the row is locked by the caller: the UPDATE finds it
    return new, changed


def _validated_changes(changes: object) -> dict[str, Any]:
    if not isinstance(changes, Mapping) or not changes:
        raise ValidationFailed("changes must name at least one field", details={"field": "changes"})
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in RECTIFIABLE:
            raise ValidationFailed(
                f"{name} cannot be rectified here; allowed: {', '.join(sorted(RECTIFIABLE))}",
                details={"field": name},
            )
        if value is not None and not isinstance(value, str):
            raise ValidationFailed(f"{name} must be text", details={"field": name})
        text = value.strip() if isinstance(value, str) else None
        if name == "phone_e164":
            out[name] = normalize_e164(text or "", field=name)
        elif not text:
            out[name] = None
        elif name == "email":
            out[name] = _email(text, name)
        elif name == "timezone":
            out[name] = validate_timezone(text, field=name)
        elif name == "external_id" and len(text) > 200:
            raise ValidationFailed("external_id must be at most 200 characters", details={"field": name})
        else:
            out[name] = text
    return out
