"""REST API: aiohttp app under /api/v1, OpenAPI 3.1 from the route registry, roles and audit."""

from .app import build_registry, create_app
from .deps import ApiDeps, CdrQuery, DialerControl, PrivacyService, RecordingsService, WebhookReplay
from .openapi import build_openapi

__all__ = [
    "ApiDeps",
    "CdrQuery",
    "DialerControl",
    "PrivacyService",
    "RecordingsService",
    "WebhookReplay",
    "build_openapi",
    "build_registry",
    "create_app",
]
