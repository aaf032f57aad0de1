"""The pure rules of webhooks: outgoing backoff, signatures and target policy; incoming signature checks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid

import pytest

from spooled_server.config import Settings
from spooled_server.core import ingest
from spooled_server.core.auth import Principal
from spooled_server.core.errors import Unauthorized
from spooled_server.core.webhooks import (
    TargetPolicy,
    TargetRejected,
    backoff_secs,
    delivery_headers,
    signature,
)


def test_backoff_follows_the_contract_table() -> None:
    assert [backoff_secs(n, 30) for n in range(1, 7)] == [30, 120, 480, 1920, 3600, 3600]
    assert backoff_secs(10_000, 30) == 3600  # no overflow for absurd attempt counts
    assert backoff_secs(2, 0.2) == pytest.approx(0.8)


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    body = b'{"id":"x","event":"job.created"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("k", 1700000000, body) == "sha256=" + expected
    headers = delivery_headers("job.created", "d-1", 1700000000, 2, "k", body)
    assert headers["X-Spooled-Signature"] == "sha256=" + expected
    assert headers["X-Spooled-Delivery-Attempt"] == "2" and headers["X-Spooled-Delivery"] == "d-1"
    assert "X-Spooled-Signature" not in delivery_headers("job.created", "d-1", 1, 1, None, body)


def _policy(env: str, allow_private: bool = False) -> TargetPolicy:
    return TargetPolicy(Settings(environment=env, webhook_allow_private_targets=allow_private))


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://10.0.0.1/x",
        "https://172.16.5.5/x",
        "https://192.168.1.1/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
        "https://[fe80::1]/x",
        "https://[fd00:ec2::254]/x",
        "https://[::ffff:10.0.0.1]/x",
        "https://100.100.100.200/x",
        "https://0.0.0.0/x",
        "http://93.184.215.14/x",
        "ftp://93.184.215.14/x",
        "https://93.184.215.14:notaport/x",
    ],
)
def test_production_rejects_non_public_or_plain_targets(url: str) -> None:
    with pytest.raises(TargetRejected):
        asyncio.run(_policy("production").check(url))


def test_production_accepts_public_https_and_development_accepts_anything() -> None:
    asyncio.run(_policy("production").check("https://93.184.215.14/hook"))
    asyncio.run(_policy("production").check("https://[2606:2800:220:1::1]/hook"))
    asyncio.run(_policy("production", allow_private=True).check("https://127.0.0.1:8443/hook"))
    with pytest.raises(TargetRejected, match="https"):
        asyncio.run(_policy("production", allow_private=True).check("http://127.0.0.1/hook"))
    asyncio.run(_policy("development").check("http://127.0.0.1:9/hook"))
    asyncio.run(_policy("development").check("http://localhost/hook"))


def _gate(provider: str, headers: dict[str, str], **settings: object) -> ingest.Gate:
    org = uuid.uuid4()
    principal = Principal(org_id=org, key_id=uuid.UUID(int=0), queues=(), plan_tier="unlimited")
    return ingest.Gate(org, provider, principal, dict(settings), headers=headers)


def test_github_signature() -> None:
    body = b'{"action":"opened"}'
    good = "sha256=" + hmac.new(b"gh", body, hashlib.sha256).hexdigest()
    ingest.verify_github(
        _gate("github", {"x-hub-signature-256": good}, ingest_secrets={"github": "gh"}), body
    )
    flipped = good[:-1] + ("0" if good[-1] != "0" else "1")
    for headers in [{"x-hub-signature-256": flipped}, {"x-hub-signature-256": good[7:]}, {}]:
        with pytest.raises(Unauthorized):
            ingest.verify_github(_gate("github", headers, ingest_secrets={"github": "gh"}), body)
    with pytest.raises(Unauthorized):  # signed with the provider secret, but the body changed
        ingest.verify_github(
            _gate("github", {"x-hub-signature-256": good}, ingest_secrets={"github": "gh"}), body + b" "
        )
    # Without a provider secret the org's webhook token is the key; a sent X-Webhook-Token must match too.
    token_signed = "sha256=" + hmac.new(b"whk_t", body, hashlib.sha256).hexdigest()
    ingest.verify_github(_gate("github", {"x-hub-signature-256": token_signed}, webhook_token="whk_t"), body)
    with pytest.raises(Unauthorized):
        ingest.verify_github(
            _gate(
                "github",
                {"x-hub-signature-256": token_signed, "x-webhook-token": "other"},
                webhook_token="whk_t",
            ),
            body,
        )


def test_stripe_signature_and_tolerance() -> None:
    body = b'{"id":"evt_1","type":"invoice.paid"}'
    now = int(time.time())

    def header(t: int, secret: bytes = b"st") -> str:
        return f"t={t},v1={hmac.new(secret, f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"

    ingest.verify_stripe(
        _gate("stripe", {"stripe-signature": header(now)}, ingest_secrets={"stripe": "st"}), body
    )
    # Any of several v1 values may match (secret rotation).
    both = header(now, b"old") + "," + header(now).split(",")[1]
    ingest.verify_stripe(_gate("stripe", {"stripe-signature": both}, ingest_secrets={"stripe": "st"}), body)
    for bad in [header(now - 301), header(now + 301), header(now, b"wrong"), f"t={now}", "v1=abc", ""]:
        with pytest.raises(Unauthorized):
            ingest.verify_stripe(
                _gate("stripe", {"stripe-signature": bad}, ingest_secrets={"stripe": "st"}), body
            )


def test_shopify_signature() -> None:
    body = b'{"id":1}'
    good = base64.b64encode(hmac.new(b"sh", body, hashlib.sha256).digest()).decode()
    ingest.verify_shopify(
        _gate("shopify", {"x-shopify-hmac-sha256": good}, ingest_secrets={"shopify": "sh"}), body
    )
    with pytest.raises(Unauthorized):
        ingest.verify_shopify(
            _gate("shopify", {"x-shopify-hmac-sha256": good}, ingest_secrets={"shopify": "x"}), body
        )
    with pytest.raises(Unauthorized):
        ingest.verify_shopify(_gate("shopify", {}, ingest_secrets={"shopify": "sh"}), body)


def test_custom_token() -> None:
    ingest.verify_custom(_gate("custom", {"x-webhook-token": "whk_abc"}, webhook_token="whk_abc"))
    for headers, token in [
        ({"x-webhook-token": "whk_abd"}, "whk_abc"),
        ({}, "whk_abc"),
        ({"x-webhook-token": "whk_abc"}, None),
    ]:
        with pytest.raises(Unauthorized):
            ingest.verify_custom(_gate("custom", headers, webhook_token=token))
