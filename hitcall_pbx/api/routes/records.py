"""Recordings (list, download, listen, complaint holds) and data-subject rights. Every
download and listen is audited before a byte is sent."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import AwareDatetime, Field, RootModel

from ...auth import Principal, Role
from ...core.retention import CASE_ID_PATTERN
from ...errors import ValidationFailed
from ..deps import ErasureResult, Recording, RecordingFilter, RecordingPage, Rectification, SubjectRef, SubjectResult
from ..registry import V1, Ctx, Registry
from ..repos import audit as audit_repo
from ..types import In

LISTEN = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.COMPLIANCE})
COMPLIANCE = frozenset({Role.ADMIN, Role.COMPLIANCE})
LISTEN_AUDIT_WINDOW = timedelta(hours=1)
_BYTE_RANGES = re.compile(r"bytes=[0-9,-]{1,100}")


class RecordingParams(RecordingFilter):
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=200)


class HoldIn(In):
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")
    case_id: str | None = Field(
        default=None,
        pattern=CASE_ID_PATTERN,
        description="complaint case identifier (it is audited: an id, never a name); the reason holds the text",
        examples=["CASE-2025/17"],
    )
    until: AwareDatetime | None = Field(default=None, description="null = the longest allowed, 18 months from the call")


class SubjectIn(In):
    subject: SubjectRef


class RectifyIn(In):
    subject: SubjectRef
    changes: Rectification


class RestrictIn(In):
    subject: SubjectRef
    restricted: bool = Field(default=True, description="false lifts the restriction")


class SubjectData(RootModel[dict[str, Any]]):
    """Everything held about the subject, machine-readable."""


async def _read_and_delete(path: Path) -> AsyncIterator[bytes]:
    try:
        with path.open("rb") as f:
            while chunk := await asyncio.to_thread(f.read, 1 << 20):
                yield chunk
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


def credential_ref(me: Principal) -> str:
    """Which credential made a request, for audit rows: ``token:<id>``, or ``session:`` and a
    pseudonym of the session (a hash of its stored hash: neither the token nor a key to it)."""
    if me.token_id is not None:
        return f"token:{me.token_id}"
    digest = hashlib.sha256(b"hitcall-audit-session:" + (me.session_hash or "").encode()).hexdigest()
    return f"session:{digest[:16]}"


def _range(request: web.Request) -> str | None:
    """The Range header for the audit row when it is a byte range (never free text)."""
    rng = request.headers.get("Range")
    if rng is None:
        return None
    rng = rng.replace(" ", "")
    return rng if _BYTE_RANGES.fullmatch(rng) else "unparsed"


async def audit_audio_access(ctx: Ctx, action: str, recording_id: uuid.UUID, *, once: bool) -> None:
    """Audit an access to recording audio before any byte of it is sent. `once`: a player's
    many range requests of one listen make one row per credential and recording per
    LISTEN_AUDIT_WINDOW (any range, first or not); otherwise every request gets its row."""
    credential = credential_ref(ctx.me)
    if once and await audit_repo.seen_recently(
        ctx.pool,
        action=action,
        object_type="recording",
        object_id=str(recording_id),
        actor=ctx.actor.name,
        credential=credential,
        window_s=LISTEN_AUDIT_WINDOW.total_seconds(),
    ):
        return
    await ctx.audit(
        ctx.pool, action, "recording", recording_id, {"credential": credential, "range": _range(ctx.request)}
    )


async def _supervised_recording(ctx: Ctx) -> Recording | None:
    """A supervisor reaches the recordings of the campaigns they supervise only."""
    if ctx.me.role is not Role.SUPERVISOR:
        return None
    recording = await ctx.deps.recordings.get(ctx.params["recording_id"])
    await ctx.supervised_campaign_only(recording.campaign_id)
    return recording


async def _serve(ctx: Ctx, *, inline: bool) -> web.StreamResponse:
    recording_id = ctx.params["recording_id"]
    await _supervised_recording(ctx)
    f = await ctx.deps.recordings.open(recording_id)
    # Whatever the Range (none, from 0, from the middle, a suffix, several), the access is
    # audited before the response is prepared: no audio byte leaves without its row.
    await audit_audio_access(ctx, "recording.listen" if inline else "recording.download", recording_id, once=inline)
    disposition = "inline" if inline else "attachment"
    return web.FileResponse(
        f.path,
        headers={
            "Content-Type": f.content_type,
            "Content-Disposition": f'{disposition}; filename="{f.filename}"',
            "Cache-Control": "no-store",
        },
    )


async def _audit_exported_audio(ctx: Ctx, data: dict[str, Any]) -> None:
    """One recording.export row per recording whose audio is in a subject export, so that
    every access to a recording's audio is found under the recording (the subject.export
    row names the subject)."""
    ids = [r["id"] for r in data.get("recordings", []) if r.get("audio_file")]
    if not ids:
        return
    credential = credential_ref(ctx.me)
    async with ctx.tx() as conn:
        for recording_id in ids:
            await ctx.audit(conn, "recording.export", "recording", recording_id, {"credential": credential})


def register(reg: Registry) -> None:
    @reg.add(
        "GET",
        f"{V1}/recordings",
        summary="List recordings",
        tag="recordings",
        roles=LISTEN,
        scope="recordings:read",
        query=RecordingParams,
        response=RecordingPage,
    )
    async def list_recordings(ctx: Ctx) -> RecordingPage:
        q: RecordingParams = ctx.query
        flt = RecordingFilter.model_validate(q.model_dump(include=set(RecordingFilter.model_fields)))
        if ctx.me.role is Role.SUPERVISOR:  # a supervisor names one of the campaigns they supervise
            if q.campaign_id is None:
                raise ValidationFailed(
                    "a supervisor names one of the campaigns they supervise", details={"field": "campaign_id"}
                )
            await ctx.supervised_campaign_only(q.campaign_id)
        return await ctx.deps.recordings.list(flt, limit=q.limit, cursor=q.cursor)

    @reg.add(
        "GET",
        f"{V1}/recordings/{{recording_id}}",
        summary="Get a recording's metadata",
        tag="recordings",
        roles=LISTEN,
        scope="recordings:read",
        response=Recording,
    )
    async def get_recording(ctx: Ctx) -> Recording:
        return await _supervised_recording(ctx) or await ctx.deps.recordings.get(ctx.params["recording_id"])

    @reg.add(
        "GET",
        f"{V1}/recordings/{{recording_id}}/download",
        summary="Download a recording",
        tag="recordings",
        roles=LISTEN,
        scope="recordings:read",
        media="audio/*",
        description="Audited (recording.download), every request, before any byte is sent.",
    )
    async def download_recording(ctx: Ctx) -> web.StreamResponse:
        return await _serve(ctx, inline=False)

    @reg.add(
        "GET",
        f"{V1}/recordings/{{recording_id}}/stream",
        summary="Listen to a recording (byte ranges)",
        tag="recordings",
        roles=LISTEN,
        scope="recordings:read",
        media="audio/*",
        description="Supports Range requests. Audited (recording.listen) before any byte is sent: once per"
        " credential (session or API token) and recording per hour, whatever the Range.",
    )
    async def stream_recording(ctx: Ctx) -> web.StreamResponse:
        return await _serve(ctx, inline=True)

    @reg.add(
        "POST",
        f"{V1}/recordings/{{recording_id}}/hold",
        summary="Put a recording on complaint hold",
        tag="recordings",
        roles=COMPLIANCE,
        scope="recordings:hold",
        body=HoldIn,
        response=Recording,
        description="Keeps the recording past its policy deadline, at most 18 months from the call. Audited.",
    )
    async def hold_recording(ctx: Ctx) -> Recording:
        b: HoldIn = ctx.body
        return await ctx.deps.recordings.hold(
            ctx.params["recording_id"], reason=b.reason, case_id=b.case_id, until=b.until, actor=ctx.actor
        )

    @reg.add(
        "POST",
        f"{V1}/recordings/{{recording_id}}/release",
        summary="Release a complaint hold",
        tag="recordings",
        roles=COMPLIANCE,
        scope="recordings:hold",
        response=Recording,
        description="The policy deadline applies again (purged at once when it has passed). Audited.",
    )
    async def release_recording(ctx: Ctx) -> Recording:
        return await ctx.deps.recordings.release(ctx.params["recording_id"], actor=ctx.actor)

    # ---------------------------------------------------------------- data subjects

    @reg.add(
        "POST",
        f"{V1}/subjects/export",
        summary="Export everything held about a person (JSON)",
        tag="subjects",
        roles=COMPLIANCE,
        scope="subjects:read",
        body=SubjectIn,
        response=SubjectData,
    )
    async def export_subject(ctx: Ctx) -> SubjectData:
        export = await ctx.deps.privacy.export(ctx.body.subject, include_audio=False, actor=ctx.actor)
        return SubjectData(export.data)

    @reg.add(
        "POST",
        f"{V1}/subjects/export.zip",
        summary="Export everything held about a person, with audio (zip)",
        tag="subjects",
        roles=COMPLIANCE,
        scope="subjects:read",
        body=SubjectIn,
        media="application/zip",
        description="Audited before the archive is sent: subject.export, and recording.export for each"
        " recording whose audio is in it.",
    )
    async def export_subject_zip(ctx: Ctx) -> web.StreamResponse:
        export = await ctx.deps.privacy.export(ctx.body.subject, include_audio=True, actor=ctx.actor)
        if export.archive is None:
            raise RuntimeError("privacy export returned no archive for include_audio")
        try:
            await _audit_exported_audio(ctx, export.data)
        except BaseException:
            export.archive.unlink(missing_ok=True)  # not handed over unless audited
            raise
        headers = {
            "Content-Type": "application/zip",
            "Content-Disposition": 'attachment; filename="subject-export.zip"',
            "Cache-Control": "no-store",
        }
        return await ctx.stream(headers, _read_and_delete(export.archive))

    @reg.add(
        "POST",
        f"{V1}/subjects/rectify",
        summary="Rectify a person's data",
        tag="subjects",
        roles=COMPLIANCE,
        scope="subjects:write",
        body=RectifyIn,
        response=SubjectResult,
    )
    async def rectify_subject(ctx: Ctx) -> SubjectResult:
        return await ctx.deps.privacy.rectify(ctx.body.subject, ctx.body.changes, actor=ctx.actor)

    @reg.add(
        "POST",
        f"{V1}/subjects/erase",
        summary="Erase a person",
        tag="subjects",
        roles=COMPLIANCE,
        scope="subjects:write",
        body=SubjectIn,
        response=ErasureResult,
        description="Personal data deleted or anonymised, recordings deleted unless held (reported as"
        " retained, with the reason); the number is suppressed so it is never dialled again.",
    )
    async def erase_subject(ctx: Ctx) -> ErasureResult:
        return await ctx.deps.privacy.erase(ctx.body.subject, actor=ctx.actor)

    @reg.add(
        "POST",
        f"{V1}/subjects/restrict",
        summary="Restrict (or lift restriction of) processing",
        tag="subjects",
        roles=COMPLIANCE,
        scope="subjects:write",
        body=RestrictIn,
        response=SubjectResult,
    )
    async def restrict_subject(ctx: Ctx) -> SubjectResult:
        return await ctx.deps.privacy.restrict(ctx.body.subject, ctx.body.restricted, actor=ctx.actor)

    @reg.add(
        "POST",
        f"{V1}/subjects/object",
        summary="Objection to direct marketing",
        tag="subjects",
        roles=COMPLIANCE,
        scope="subjects:write",
        body=SubjectIn,
        response=SubjectResult,
        description="A marketing prohibition across all campaigns, effective before the next dial.",
    )
    async def object_subject(ctx: Ctx) -> SubjectResult:
        return await ctx.deps.privacy.object_to_marketing(ctx.body.subject, actor=ctx.actor)
