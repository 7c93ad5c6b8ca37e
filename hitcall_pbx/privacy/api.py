"""The REST API's `PrivacyService` (hitcall_pbx.api.deps) on top of the domain service."""

from __future__ import annotations

from ..api.deps import (
    ErasureResult,
    Rectification,
    RetainedRecording,
    SubjectExport,
    SubjectRef,
    SubjectResult,
)
from ..auth import Actor
from .service import PrivacyService

__all__ = ["ApiPrivacy"]

# API field name -> contacts column
_FIELDS = {"phone": "phone_e164"}


def _subject(ref: SubjectRef) -> str:
    subject = ref.phone if ref.phone is not None else ref.email
    assert subject is not None, "SubjectRef requires a phone or an email"
    return subject


class ApiPrivacy:
    def __init__(self, service: PrivacyService) -> None:
        self._service = service

    async def export(self, subject: SubjectRef, *, include_audio: bool, actor: Actor) -> SubjectExport:
        out = await self._service.export(_subject(subject), actor=actor, include_audio=include_audio)
        return SubjectExport(data=out.data, archive=out.archive)

    async def rectify(self, subject: SubjectRef, changes: Rectification, *, actor: Actor) -> SubjectResult:
        fields = {_FIELDS.get(k, k): v for k, v in changes.changes().items()}
        ids = await self._service.rectify_subject(_subject(subject), fields, actor=actor)
        return SubjectResult(
            action="rectify", contacts=len(ids), details={"contact_ids": ids, "fields": sorted(fields)}
        )

    async def erase(self, subject: SubjectRef, *, actor: Actor) -> ErasureResult:
        report = await self._service.erase(_subject(subject), actor=actor)
        return ErasureResult(
            action="erase",
            contacts=len(report.contacts_deleted),
            details={
                "attempts_anonymised": report.attempts_anonymised,
                "attempts_retained": report.attempts_retained,
                "dnc_entries_deleted": report.dnc_entries_deleted,
                "webhook_events_deleted": report.webhook_events_deleted,
                "numbers_suppressed": report.numbers_suppressed,
                "contacts_sharing_numbers": report.contacts_sharing_numbers,
            },
            recordings_deleted=len(report.recordings_deleted),
            recordings_retained=[
                RetainedRecording(
                    recording_id=r["recording_id"],
                    reason=f"complaint hold until {r['held_until']}"
                    + (f", case {r['case_id']}" if r["case_id"] else "")
                    + f": {r['hold_reason']}",
                )
                for r in report.recordings_retained
            ],
            suppressed=report.suppressed,
        )

    async def restrict(self, subject: SubjectRef, restricted: bool, *, actor: Actor) -> SubjectResult:
        ids = await self._service.restrict(_subject(subject), actor=actor, on=restricted)
        return SubjectResult(
            action="restrict" if restricted else "unrestrict", contacts=len(ids), details={"contact_ids": ids}
        )

    async def object_to_marketing(self, subject: SubjectRef, *, actor: Actor) -> SubjectResult:
        ids = await self._service.object(_subject(subject), actor=actor)
        return SubjectResult(action="object", contacts=len(ids), details={"contact_ids": ids})
