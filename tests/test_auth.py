from __future__ import annotations

import sys

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import scaleset_client as sc
from scaleset_client._auth import jwt_expiry, make_app_jwt
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client, run_together


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8])
def test_github_app_auth_gets_an_installation_token_the_fake_accepts(
        fake: FakeActionsService, clock: FakeClock, rsa_key: rsa.RSAPrivateKey,
        fmt: serialization.PrivateFormat) -> None:
    fake.register_app("Iv1.abc123", rsa_key.public_key())
    app = sc.GitHubAppAuth(client_id="Iv1.abc123", installation_id=99, private_key=pem(rsa_key, fmt))
    with sc.Client(fake.config_url, app=app, clock=clock) as client:
        assert client.get_runner_by_name("nobody") is None
    token_req = fake.requests("installation_token")[0]
    assert token_req.path == "/api/v3/app/installations/99/access_tokens"
    assert token_req.headers["Content-Type"] == "application/vnd.github+json"
    reg = fake.requests("registration_token")[0]
    assert reg.headers["Authorization"].startswith("Bearer ghs_")
    assert "BEGIN" not in repr(app)


def test_app_jwt_claims_and_signature_verify_with_pyjwt(rsa_key: rsa.RSAPrivateKey) -> None:
    token = make_app_jwt(123456, rsa_key, now=1_800_000_000)
    claims = pyjwt.decode(token, rsa_key.public_key(), algorithms=["RS256"], options={"verify_exp": False,
                                                                                       "verify_iat": False})
    assert claims == {"iat": 1_800_000_000 - 60, "exp": 1_800_000_000 - 60 + 540, "iss": "123456"}
    assert pyjwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT"}


def test_rejected_app_jwt_is_an_authentication_error(fake: FakeActionsService, clock: FakeClock,
                                                      rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake.register_app("7", other.public_key())
    app = sc.GitHubAppAuth(7, 99, pem(rsa_key, serialization.PrivateFormat.PKCS8))
    with sc.Client(fake.config_url, app=app, clock=clock) as client, pytest.raises(sc.AuthenticationError):
        client.get_runner(1)


def test_bad_private_key_is_a_config_error_at_construction(fake: FakeActionsService) -> None:
    with pytest.raises(sc.ConfigError, match="PEM"):
        sc.Client(fake.config_url, app=sc.GitHubAppAuth("1", 1, "-----BEGIN RSA PRIVATE KEY-----\nnope\n"))
    with pytest.raises(sc.ConfigError, match="installation_id"):
        sc.GitHubAppAuth("1", 0, "key")
    assert fake.count() == 0


def test_without_cryptography_app_auth_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                          fake: FakeActionsService) -> None:
    for name in list(sys.modules):
        if name == "cryptography" or name.startswith("cryptography."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(sc.ConfigError, match=r"pip install 'scaleset-client\[app\]'"):
        sc.Client(fake.config_url, app=sc.GitHubAppAuth("1", 1, "-----BEGIN PRIVATE KEY-----"))


def test_registration_chain_shapes(client: sc.Client, fake: FakeActionsService) -> None:
    client.get_runner_by_name("x")
    reg = fake.requests("registration_token")[0]
    assert reg.path == "/api/v3/orgs/fake-org/actions/runners/registration-token" and reg.body == b""
    assert reg.headers["Content-Type"] == "application/vnd.github.v3+json"
    conn = fake.requests("runner_registration")[0]
    assert conn.headers["Authorization"].startswith("RemoteAuth ")
    assert conn.body == b'{"url":"' + fake.config_url.encode() + b'","runner_event":"register"}\n'


def test_admin_token_is_reused_until_sixty_seconds_before_exp(client: sc.Client, fake: FakeActionsService,
                                                              clock: FakeClock) -> None:
    client.get_runner_by_name("x")
    token = client._admin.peek()
    assert token is not None and token.expires_at == pytest.approx(clock.wall() + 600, abs=2)
    clock.advance(600 - 62)
    client.get_runner_by_name("x")
    assert client.admin_token_refreshes == 1
    clock.advance(3)  # now within 60 s of exp
    client.get_runner_by_name("x")
    assert client.admin_token_refreshes == 2 and fake.count("runner_registration") == 2


def test_failed_renewal_keeps_the_old_token(client: sc.Client, fake: FakeActionsService, clock: FakeClock) -> None:
    client.get_runner_by_name("x")
    before = client._admin.peek()
    clock.advance(560)
    fake.inject("registration_token", Fault.respond(401, json_body={"message": "test"}))
    with pytest.raises(sc.AuthenticationError, match="test"):
        client.get_runner_by_name("x")
    assert client._admin.peek() is before


def test_runner_registration_retries_401_then_succeeds(client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject("runner_registration", Fault.respond(401, json_body={"message": "not yet"}), times=4)
    assert client.get_runner_by_name("x") is None
    assert fake.count("runner_registration") == 5


def test_registration_response_without_token_is_a_response_error(client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject("runner_registration", Fault.respond(201, json_body={"url": "http://x/"}))
    with pytest.raises(sc.ResponseError, match="missing token"):
        client.get_runner(1)


def test_admin_401_renews_the_token_once_and_retries(client: sc.Client, fake: FakeActionsService) -> None:
    client.get_runner_by_name("x")
    fake.expire_admin_tokens()  # the server revokes it; our copy still looks valid
    assert client.get_runner_by_name("x") is None
    assert client.admin_token_refreshes == 2
    assert [r.operation for r in fake.requests(server="actions")][-2:] == ["get_runner_by_name"] * 2


def test_sixteen_threads_with_an_expired_token_cause_one_renewal(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock)
    client.get_runner_by_name("warm-up")
    clock.advance(590)
    fake.clear_log()
    fake.inject("registration_token", Fault.delay(0.3))  # hold the renewal so every thread piles up
    results = run_together(16, lambda: client.get_runner_by_name("x"))
    client.close()
    assert results == [None] * 16
    assert fake.count("registration_token") == 1 and fake.count("runner_registration") == 1
    assert fake.count("get_runner_by_name") == 16


def test_jwt_expiry_reads_exp_without_verifying() -> None:
    token = pyjwt.encode({"exp": 1234}, "k" * 32, algorithm="HS256")
    assert jwt_expiry(token) == 1234
    for bad in ("a.b", "a.b.c", pyjwt.encode({"x": 1}, "k" * 32, algorithm="HS256")):
        with pytest.raises(sc.ResponseError):
            jwt_expiry(bad)


def test_a_clock_ten_minutes_fast_is_measured_and_compensated(rsa_key: rsa.RSAPrivateKey) -> None:
    service_clock = FakeClock(wall=1_800_000_000.0)
    client_clock = FakeClock(wall=1_800_000_600.0)  # this machine is 10 minutes ahead
    with FakeActionsService(clock=service_clock, long_poll_hold=0.05) as fake:
        fake.register_app("Iv1.skew", rsa_key.public_key())
        app = sc.GitHubAppAuth("Iv1.skew", 5, pem(rsa_key, serialization.PrivateFormat.PKCS8))
        with sc.Client(fake.config_url, app=app, clock=client_clock) as client:
            for _ in range(5):
                assert client.get_runner_by_name("x") is None
            assert client.clock_skew == pytest.approx(-600, abs=2)
        rejected, accepted = (pyjwt.decode(r.headers["Authorization"][7:], options={"verify_signature": False})
                              for r in fake.requests("installation_token"))
        assert rejected["iat"] - accepted["iat"] == pytest.approx(600, abs=2)  # ours first, then GitHub's time
        assert abs(accepted["iat"] - (service_clock.wall() - 60)) <= 2
        assert fake.count("installation_token") == 2 and fake.count("runner_registration") == 1


def test_a_clock_that_cannot_be_fixed_is_named_as_the_cause(rsa_key: rsa.RSAPrivateKey) -> None:
    with FakeActionsService(long_poll_hold=0.05) as fake:
        fake.register_app("Iv1.skew", rsa_key.public_key())
        fake.inject("installation_token", Fault.respond(401, json_body={
            "message": "'Expiration time' claim ('exp') is too far in the future"}), times=2)
        app = sc.GitHubAppAuth("Iv1.skew", 5, pem(rsa_key, serialization.PrivateFormat.PKCS8))
        with sc.Client(fake.config_url, app=app) as client, pytest.raises(sc.AuthenticationError,
                                                                          match="clock"):
            client.get_runner(1)


def test_admin_token_expiry_is_judged_by_githubs_clock_with_a_pat() -> None:
    with FakeActionsService(clock=FakeClock(wall=1_800_000_000.0), long_poll_hold=0.05) as fake:
        with sc.Client(fake.config_url, token=fake.token, clock=FakeClock(wall=1_800_000_600.0)) as client:
            for _ in range(5):
                client.get_runner_by_name("x")
        assert fake.count("runner_registration") == 1  # without compensation: a renewal on every call
