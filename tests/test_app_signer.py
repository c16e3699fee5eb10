"""A GitHub App whose key never reaches the client: ``GitHubAppAuth(signer=...)`` signs the JWT
through an object that keeps the key to itself (a stand-in for a KMS or HSM), against the fake
that verifies the RS256 signature over real sockets. The signer's output never shows in a log,
an error or a repr; a signer that fails is asked again, then the call ends with a clear error."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .conftest import run_together


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_holder(key: rsa.RSAPrivateKey) -> tuple[object, list[bytes]]:
    """A signer whose key lives in a closure: no attribute, no method hands it out (as a KMS)."""
    signed: list[bytes] = []

    def sign(message: bytes) -> bytes:
        signed.append(message)
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    class KMSKey:
        __slots__ = ()

        def sign(self, message: bytes) -> bytes:
            return sign(message)

    return KMSKey(), signed


def _client(fake: FakeActionsService, clock: FakeClock, app: sc.GitHubAppAuth) -> sc.Client:
    return sc.Client(fake.config_url, app=app, clock=clock, timeout=(2.0, 5.0), long_poll_timeout=5.0)


def test_a_signer_object_signs_the_app_jwt_the_service_accepts(fake: FakeActionsService, clock: FakeClock,
                                                               rsa_key: rsa.RSAPrivateKey) -> None:
    fake.register_app("Iv1.kms", rsa_key.public_key())
    signer, signed = _key_holder(rsa_key)
    app = sc.GitHubAppAuth("Iv1.kms", 99, signer=signer)
    with _client(fake, clock, app) as client:
        assert client.get_runner_by_name("nobody") is None
    assert len(signed) == 1 and fake.count("installation_token") == 1
    jwt = fake.requests("installation_token")[0].headers["Authorization"].removeprefix("Bearer ")
    assert jwt.rsplit(".", 1)[0].encode() == signed[0]  # the signer saw header.claims, nothing else
    claims = pyjwt.decode(jwt, rsa_key.public_key(), algorithms=["RS256"],
                          options={"verify_exp": False, "verify_iat": False})
    assert claims["iss"] == "Iv1.kms" and claims["exp"] - claims["iat"] == 540
    assert fake.requests("registration_token")[0].headers["Authorization"].startswith("Bearer ghs_")


def test_a_plain_callable_is_a_signer(fake: FakeActionsService, clock: FakeClock, rsa_key: rsa.RSAPrivateKey) -> None:
    fake.register_app(12345, rsa_key.public_key())
    app = sc.GitHubAppAuth(12345, 7, signer=lambda m: rsa_key.sign(m, padding.PKCS1v15(), hashes.SHA256()))
    with _client(fake, clock, app) as client:
        assert client.get_runner_by_name("nobody") is None


def test_a_cryptography_key_object_is_a_signer(fake: FakeActionsService, clock: FakeClock,
                                               rsa_key: rsa.RSAPrivateKey) -> None:
    """An HSM-backed ``cryptography`` key (PKCS#11 providers offer those) signs as it is."""
    fake.register_app("Iv1.hsm", rsa_key.public_key())
    with _client(fake, clock, sc.GitHubAppAuth("Iv1.hsm", 7, signer=rsa_key)) as client:
        assert client.get_runner_by_name("nobody") is None


def test_threads_share_one_signature_per_installation_token(fake: FakeActionsService, clock: FakeClock,
                                                            rsa_key: rsa.RSAPrivateKey) -> None:
    fake.register_app("Iv1.kms", rsa_key.public_key())
    signer, signed = _key_holder(rsa_key)
    with _client(fake, clock, sc.GitHubAppAuth("Iv1.kms", 99, signer=signer)) as client:
        results = run_together(8, lambda: client.get_runner_by_name("nobody"))
    assert results == [None] * 8
    assert len(signed) == 1 and fake.count("installation_token") == 1


def test_a_signer_with_the_wrong_key_is_an_authentication_error(fake: FakeActionsService, clock: FakeClock,
                                                                rsa_key: rsa.RSAPrivateKey) -> None:
    fake.register_app("Iv1.kms", rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    signer, _ = _key_holder(rsa_key)
    with _client(fake, clock, sc.GitHubAppAuth("Iv1.kms", 99, signer=signer)) as client, \
            pytest.raises(sc.AuthenticationError):
        client.get_runner(1)


def _failing(exc: BaseException | None, result: object = None) -> tuple[Callable[[bytes], object], list[bytes]]:
    calls: list[bytes] = []

    def sign(message: bytes) -> object:
        calls.append(message)
        if exc is not None:
            raise exc
        return result

    return sign, calls


def test_a_signer_that_keeps_failing_is_asked_three_times_then_an_authentication_error(
        fake: FakeActionsService, clock: FakeClock) -> None:
    sign, calls = _failing(RuntimeError("KMS endpoint unreachable"))
    app = sc.GitHubAppAuth("Iv1.kms", 99, signer=sign)  # type: ignore[arg-type]
    with _client(fake, clock, app) as client, pytest.raises(sc.CredentialSourceError) as info:
        client.get_runner(1)
    assert isinstance(info.value, sc.AuthenticationError)
    assert len(calls) == 3 and list(clock.sleeps)[:2] == [0.25, 0.5]
    assert str(info.value) == ("GitHubAppAuth.signer failed 3 times; last: RuntimeError: KMS endpoint unreachable")
    assert fake.count("installation_token") == 0


def test_a_signer_that_says_later_is_transient_and_asked_once(fake: FakeActionsService, clock: FakeClock) -> None:
    busy = sc.TransientError("KMS throttled")
    busy.set_retry(retry_after=30.0, now=clock.wall())
    sign, calls = _failing(busy)
    with _client(fake, clock, sc.GitHubAppAuth("Iv1.kms", 99, signer=sign)) as client:  # type: ignore[arg-type]
        with pytest.raises(sc.TokenUnavailableError) as info:
            client.get_runner(1)
    assert isinstance(info.value, sc.TransientError) and info.value.retry_after == 30.0
    assert len(calls) == 1 and fake.count("installation_token") == 0


def test_a_signer_returning_text_is_refused_without_showing_it(fake: FakeActionsService, clock: FakeClock,
                                                              rsa_key: rsa.RSAPrivateKey) -> None:
    text = base64.b64encode(rsa_key.sign(b"x", padding.PKCS1v15(), hashes.SHA256())).decode()
    sign, calls = _failing(None, text)
    with _client(fake, clock, sc.GitHubAppAuth("Iv1.kms", 99, signer=sign)) as client:  # type: ignore[arg-type]
        with pytest.raises(sc.CredentialSourceError, match="returned str; it must return the raw RS256") as info:
            client.get_runner(1)
    assert text not in str(info.value) and text[:40] not in repr(info.value)
    assert len(calls) == 3


def test_neither_the_key_nor_the_signature_reaches_a_log_or_repr(fake: FakeActionsService, clock: FakeClock,
                                                                 rsa_key: rsa.RSAPrivateKey,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    fake.register_app("Iv1.kms", rsa_key.public_key())
    outputs: list[bytes] = []

    def sign(message: bytes) -> bytes:
        outputs.append(rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256()))
        return outputs[-1]

    app = sc.GitHubAppAuth("Iv1.kms", 99, signer=sign)
    caplog.set_level(logging.DEBUG)
    with _client(fake, clock, app) as client:
        client.get_runner_by_name("nobody")
        fake.expire_admin_tokens()
        clock.advance(3600)  # the installation token too: a second signature
        client.get_runner_by_name("nobody")
        text = caplog.text + repr(app) + repr(client) + str(client.health())
    assert len(outputs) == 2
    for signature in outputs:
        encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
        assert encoded[:24] not in text
    assert "sign" not in repr(app) and "PRIVATE" not in text


def test_signer_and_private_key_are_exclusive_and_checked_at_construction() -> None:
    with pytest.raises(sc.ConfigError, match="not both"):
        sc.GitHubAppAuth("Iv1.x", 1, private_key="-----BEGIN PRIVATE KEY-----", signer=lambda m: m)
    with pytest.raises(sc.ConfigError, match="signer="):
        sc.GitHubAppAuth("Iv1.x", 1)
    with pytest.raises(sc.ConfigError, match="sign"):
        sc.GitHubAppAuth("Iv1.x", 1, signer="not a signer")  # type: ignore[arg-type]
    assert isinstance(_key_holder(rsa.generate_private_key(public_exponent=65537, key_size=2048))[0], sc.AppSigner)
