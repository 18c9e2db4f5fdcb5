"""orders.auth against the local OIDC issuer over real HTTP: the verification matrix."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from google.auth import jwt

from localcloud.oidc import LocalIssuer
from orders.auth import (
    CLOCK_SKEW_S,
    GOOGLE_CERTS_URL,
    GOOGLE_ISSUERS,
    AuthSettings,
    CallerVerifier,
    CertsCache,
    build_verifier,
)
from orders.errors import (
    AuthError,
    CertsUnavailableError,
    ForbiddenCallerError,
    InvalidTokenError,
    MissingTokenError,
    SettingsError,
)
from tests.support.clock import FakeClock

AUDIENCE = "http://worker.test"
INVOKER = "tasks-invoker@p.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as started:
        yield started


@pytest.fixture(scope="module")
def other_issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as started:
        yield started


def verifier_for(issuer: LocalIssuer, **overrides: object) -> CallerVerifier:
    settings = AuthSettings(
        audience=AUDIENCE,
        allowed_emails=frozenset({INVOKER}),
        issuers=(issuer.issuer_url,),
        certs_url=issuer.certs_url,
    )
    return CallerVerifier(AuthSettings(**{**settings.__dict__, **overrides}))  # type: ignore[arg-type]


def test_a_valid_token_gives_the_caller(issuer: LocalIssuer) -> None:
    caller = verifier_for(issuer).verify(f"Bearer {issuer.mint(AUDIENCE, INVOKER)}")
    assert caller.email == INVOKER
    assert caller.issuer == issuer.issuer_url
    assert caller.claims["aud"] == AUDIENCE and caller.subject


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwYXNz", "Bearer ", "token-alone"])
def test_no_bearer_token_is_missing(issuer: LocalIssuer, header: str | None) -> None:
    with pytest.raises(MissingTokenError) as caught:
        verifier_for(issuer).verify(header)
    assert caught.value.http_status == 401


def test_refusals(issuer: LocalIssuer, other_issuer: LocalIssuer) -> None:
    verifier = verifier_for(issuer)
    cases: list[tuple[str, type[AuthError], str]] = [
        ("not-a-jwt", InvalidTokenError, "not a JWT"),
        (other_issuer.mint(AUDIENCE, INVOKER), InvalidTokenError, "does not verify"),
        (issuer.mint(AUDIENCE, INVOKER, lifetime_s=-60), InvalidTokenError, "expired"),
        (issuer.mint("http://elsewhere.test", INVOKER), InvalidTokenError, "audience"),
        (
            issuer.mint(AUDIENCE, "intruder@p.iam.gserviceaccount.com"),
            ForbiddenCallerError,
            "intruder",
        ),
    ]
    for token, error, words in cases:
        with pytest.raises(error, match=words) as caught:
            verifier.verify(f"Bearer {token}")
        assert caught.value.http_status == (403 if error is ForbiddenCallerError else 401)


def test_a_tampered_token_does_not_verify(issuer: LocalIssuer) -> None:
    head, body, signature = issuer.mint(AUDIENCE, INVOKER).split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    with pytest.raises(InvalidTokenError, match="does not verify"):
        verifier_for(issuer).verify(f"Bearer {forged}")


def test_an_untrusted_issuer_is_refused(issuer: LocalIssuer) -> None:
    verifier = verifier_for(issuer, issuers=GOOGLE_ISSUERS)
    with pytest.raises(InvalidTokenError, match="not trusted"):
        verifier.verify(f"Bearer {issuer.mint(AUDIENCE, INVOKER)}")


def test_certs_are_fetched_once_and_reused(issuer: LocalIssuer, other_issuer: LocalIssuer) -> None:
    verifier = verifier_for(issuer)
    for _ in range(5):
        verifier.verify(f"Bearer {issuer.mint(AUDIENCE, INVOKER)}")
    with pytest.raises(InvalidTokenError):  # an unknown kid refetches at most once per interval
        verifier.verify(f"Bearer {other_issuer.mint(AUDIENCE, INVOKER)}")
    with pytest.raises(InvalidTokenError):
        verifier.verify(f"Bearer {other_issuer.mint(AUDIENCE, INVOKER)}")
    assert verifier.certs.fetches == 1


def test_unreachable_certs_are_a_503() -> None:
    with LocalIssuer() as gone:
        token, url = gone.mint(AUDIENCE, INVOKER), gone.certs_url
    verifier = CallerVerifier(
        AuthSettings(AUDIENCE, frozenset({INVOKER}), (url,), url), CertsCache(url)
    )
    with pytest.raises(CertsUnavailableError) as caught:
        verifier.verify(f"Bearer {token}")
    assert caught.value.http_status == 503


def test_settings_from_env_defaults_are_the_services() -> None:
    settings = AuthSettings.from_env(
        {}, default_audience=AUDIENCE, default_allowed_emails=(INVOKER,)
    )
    assert settings == AuthSettings(
        AUDIENCE, frozenset({INVOKER}), GOOGLE_ISSUERS, GOOGLE_CERTS_URL
    )
    assert settings.issuers == ("https://accounts.google.com", "accounts.google.com")


def test_settings_from_env_read_every_variable() -> None:
    env = {
        "AUTH_AUDIENCE": "https://w.run.app",
        "AUTH_ALLOWED_EMAILS": "a@x.com, b@x.com",
        "AUTH_ISSUERS": "http://127.0.0.1:9",
        "AUTH_CERTS_URL": "http://127.0.0.1:9/certs",
        "AUTH_DISABLED": "false",
    }
    settings = AuthSettings.from_env(env, default_audience="-", default_allowed_emails=())
    assert settings.audience == "https://w.run.app"
    assert settings.allowed_emails == {"a@x.com", "b@x.com"}
    assert settings.issuers == ("http://127.0.0.1:9",)
    assert settings.certs_url == "http://127.0.0.1:9/certs" and not settings.disabled
    with pytest.raises(SettingsError, match="AUTH_DISABLED"):
        AuthSettings.from_env(
            {"AUTH_DISABLED": "maybe"}, default_audience="-", default_allowed_emails=()
        )
    with pytest.raises(SettingsError, match="AUTH_ALLOWED_EMAILS"):
        AuthSettings.from_env({}, default_audience="-", default_allowed_emails=())


def test_disabling_verification_warns(caplog: pytest.LogCaptureFixture) -> None:
    settings = AuthSettings.from_env(
        {"AUTH_DISABLED": "true"}, default_audience="-", default_allowed_emails=()
    )
    with caplog.at_level(logging.WARNING, logger="orders.auth"):
        assert build_verifier(settings, "worker") is None
    assert "AUTH_DISABLED" in caplog.text
    assert build_verifier(AuthSettings("-", frozenset({INVOKER})), "worker") is not None


def test_a_verified_token_is_remembered_until_it_expires(
    issuer: LocalIssuer, other_issuer: LocalIssuer
) -> None:
    clock = FakeClock()
    settings = verifier_for(issuer).settings
    verifier = CallerVerifier(settings, clock=clock)
    token = issuer.mint(AUDIENCE, INVOKER, lifetime_s=60)  # remembered until exp + skew
    clock.now_s = jwt.decode(token, verify=False)["iat"]  # the clock reads the token's issue time
    assert verifier.verify(f"Bearer {token}").email == INVOKER
    verifier.certs = CertsCache(other_issuer.certs_url)  # keys that verify nothing of issuer's
    assert verifier.verify(f"Bearer {token}").email == INVOKER  # remembered, not re-checked
    with pytest.raises(InvalidTokenError):  # another token is checked, and fails
        verifier.verify(f"Bearer {issuer.mint(AUDIENCE, INVOKER)}")
    clock.advance(60 + CLOCK_SKEW_S - 2)  # just before the remembered verdict runs out
    assert verifier.verify(f"Bearer {token}").email == INVOKER
    clock.advance(3)  # just after: the token is checked again (and these keys refuse it)
    with pytest.raises(InvalidTokenError, match="does not verify"):
        verifier.verify(f"Bearer {token}")


def test_an_expired_token_is_refused(issuer: LocalIssuer) -> None:
    expired = issuer.mint(AUDIENCE, INVOKER, lifetime_s=-(CLOCK_SKEW_S + 5))
    with pytest.raises(InvalidTokenError, match=r"expired|Token used too late"):
        verifier_for(issuer).verify(f"Bearer {expired}")
