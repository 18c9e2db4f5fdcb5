"""The local OIDC issuer: its documents and tokens verify with google-auth."""

from __future__ import annotations

from collections.abc import Iterator

import google.auth.transport.requests
import pytest
import requests
from google.auth import jwt
from google.oauth2 import id_token

from localcloud.oidc import IssuerNotRunningError, LocalIssuer, subject_for_email

EMAIL = "invoker@test-project.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as started:
        yield started


def test_token_verifies_with_verify_token_and_certs_url(issuer: LocalIssuer) -> None:
    token = issuer.mint("https://worker.example", EMAIL, lifetime_s=120)
    request = google.auth.transport.requests.Request()
    claims = id_token.verify_token(
        token, request, audience="https://worker.example", certs_url=issuer.certs_url
    )
    assert claims["iss"] == issuer.issuer_url
    assert claims["aud"] == "https://worker.example"
    assert claims["email"] == EMAIL and claims["email_verified"] is True
    assert claims["sub"] == claims["azp"] == subject_for_email(EMAIL)
    assert claims["exp"] - claims["iat"] == 120
    assert jwt.decode_header(token)["kid"] == issuer.kid
    assert jwt.decode_header(token)["alg"] == "RS256"


def test_wrong_audience_is_rejected(issuer: LocalIssuer) -> None:
    token = issuer.mint("https://worker.example", EMAIL)
    request = google.auth.transport.requests.Request()
    with pytest.raises(ValueError, match="audience"):
        id_token.verify_token(token, request, audience="https://evil", certs_url=issuer.certs_url)


def test_documents(issuer: LocalIssuer) -> None:
    discovery = requests.get(issuer.issuer_url + "/.well-known/openid-configuration", timeout=5)
    assert discovery.json()["issuer"] == issuer.issuer_url
    assert discovery.json()["jwks_uri"] == issuer.jwks_url
    assert discovery.json()["id_token_signing_alg_values_supported"] == ["RS256"]
    certs = requests.get(issuer.certs_url, timeout=5).json()
    assert certs == {issuer.kid: issuer.certificate_pem}
    assert certs[issuer.kid].startswith("-----BEGIN CERTIFICATE-----")
    (key,) = requests.get(issuer.jwks_url, timeout=5).json()["keys"]
    assert (key["kty"], key["alg"], key["kid"], key["e"]) == ("RSA", "RS256", issuer.kid, "AQAB")
    assert requests.get(issuer.issuer_url + "/nope", timeout=5).status_code == 404


def test_subject_is_stable_and_numeric() -> None:
    # Pinned: the same email must map to the same subject in every process and release.
    assert subject_for_email(EMAIL) == "148459487425337298117"
    assert subject_for_email(EMAIL) != subject_for_email("other@example.com")
    assert subject_for_email(EMAIL).isdigit() and len(subject_for_email(EMAIL)) == 21


def test_cached_token_is_reused(issuer: LocalIssuer) -> None:
    first = issuer.cached_token("https://a", EMAIL)
    assert issuer.cached_token("https://a", EMAIL) == first
    assert issuer.cached_token("https://b", EMAIL) != first


def test_urls_need_a_started_issuer() -> None:
    issuer = LocalIssuer()
    with pytest.raises(IssuerNotRunningError):
        _ = issuer.certs_url
    issuer.start()
    issuer.stop()
    issuer.stop()
