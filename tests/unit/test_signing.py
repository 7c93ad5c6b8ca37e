"""Standard Webhooks signing, checked with the `standardwebhooks` reference library
and with the receiver recipes documented in docs/webhooks.md."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from hitcall_pbx.errors import ValidationFailed
from hitcall_pbx.hooks.signing import generate_secret, sign, signature_headers

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
# The subscriptions table's CHECK on secrets.
DB_SECRET_RE = re.compile(r"^whsec_[A-Za-z0-9+/=]{16,}$")


def test_known_vector_from_the_specification():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_generated_secrets_are_random_and_fit_the_schema():
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(DB_SECRET_RE.match(s) for s in secrets)
    Webhook(next(iter(secrets)))  # the reference library accepts the format


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=2000).map(lambda b: b.decode("latin-1").encode()), msg_id=st.uuids())
def test_reference_library_verifies_every_signature(body, msg_id):
    secret = generate_secret()
    headers = signature_headers(secret, str(msg_id), int(time.time()), body)
    Webhook(secret).verify(body, headers, json_parse=False)


def test_altered_body_wrong_secret_and_stale_timestamp_are_rejected():
    secret = generate_secret()
    body = b'{"id":"1","type":"call.ended"}'
    headers = signature_headers(secret, "1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"ended", b"answered"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    stale = signature_headers(secret, "1", int(time.time()) - 3600, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, stale)


@pytest.mark.parametrize("bad", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not*base64!", "whsec_c2hvcnQ="])
def test_malformed_secret_names_the_field(bad):
    with pytest.raises(ValidationFailed) as err:
        sign(bad, "1", 0, b"{}")
    assert err.value.details == {"field": "secret"}


def _doc_recipes() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(2))
def test_documented_receiver_recipe_verifies_and_rejects(index):
    recipes = _doc_recipes()
    assert len(recipes) == 2
    namespace: dict = {}
    exec(compile(recipes[index], f"{DOC.name}#recipe{index}", "exec"), namespace)
    verify = namespace["verify"]
    secret = generate_secret()
    body = b'{"id":"e1","type":"contact.opted_out","subject":"contact:1","data":{"contact_id":1}}'
    headers = {k.title(): v for k, v in signature_headers(secret, "e1", int(time.time()), body).items()}
    assert verify(secret, headers, body)["data"] == {"contact_id": 1}
    with pytest.raises((WebhookVerificationError, ValueError)):
        verify(secret, headers, body.replace(b"1}", b"2}"))
    with pytest.raises((WebhookVerificationError, ValueError)):
        verify(generate_secret(), headers, body)
