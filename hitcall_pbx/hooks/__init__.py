"""CRM webhooks: transactional outbox, Standard Webhooks signing, delivery with retries,
dead letter and replay."""

from .dispatcher import WebhookDispatcher, WebhookStats
from .events import EVENT_TYPES, enqueue
from .signing import generate_secret, signature_headers

__all__ = ["EVENT_TYPES", "WebhookDispatcher", "WebhookStats", "enqueue", "generate_secret", "signature_headers"]
