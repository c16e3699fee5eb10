"""Hostile servers and secrets: TLS, proxies, redirects, bounded bodies, nothing secret in logs."""

from __future__ import annotations

import logging
import resource
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault, ForwardProxy

from .helpers import make_client


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_fake(ca: trustme.CA) -> Iterator[FakeActionsService]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with FakeActionsService(long_poll_hold=0.05, ssl_context=context) as fake:
        yield fake


def test_private_ca_works_with_verify_path_even_when_requests_ca_bundle_is_set(
        tls_fake: FakeActionsService, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")  # the system CAs
    assert tls_fake.config_url.startswith("https://")
    with sc.Client(tls_fake.config_url, token=tls_fake.token, verify=str(bundle)) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="tls"))
        with client.message_session(scale_set.id) as session:
            assert session.get_message(0, 1) is None  # the long poll over TLS too


def test_unknown_ca_fails_fast_clearly_and_is_not_retried(tls_fake: FakeActionsService) -> None:
    with sc.Client(tls_fake.config_url, token=tls_fake.token) as client:
        with pytest.raises(sc.TransportError) as info:
            client.get_runner(1)
        assert "TLS failed" in str(info.value) and "verify=" in str(info.value)
        assert client.attempts_sent == 1
        assert set(client.circuit_breakers.states().values()) == {"closed"}


def test_verify_false_warns(tls_fake: FakeActionsService, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="scaleset_client"):
        client = sc.Client(tls_fake.config_url, token=tls_fake.token, verify=False)
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)
    client.close()


def test_a_proxy_carries_all_traffic_including_the_long_poll(fake: FakeActionsService, clock: FakeClock) -> None:
    with ForwardProxy() as proxy:
        client = make_client(fake, clock, proxies={"http": proxy.url, "https": proxy.url})
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="proxied"))
        with client.message_session(scale_set.id) as session:
            assert session.get_message(0, 1) is None
        client.close()
    carried = {target.split("/")[2] for _, target in proxy.requests}
    expected = {fake.servers[name].url.split("/")[2] for name in ("github", "actions", "broker")}
    assert carried == expected and len(proxy.requests) == fake.count()


def test_https_proxy_environment_is_honoured_with_connect_tunnels(
        tls_fake: FakeActionsService, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with sc.Client(tls_fake.config_url, token=tls_fake.token, verify=str(bundle)) as client:
            assert client.get_runner_by_name("x") is None
    assert proxy.requests and all(method == "CONNECT" for method, _ in proxy.requests)


def test_no_proxy_bypasses_the_proxy(fake: FakeActionsService, clock: FakeClock,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        client = make_client(fake, clock)
        assert client.get_runner_by_name("x") is None
        client.close()
    assert proxy.requests == []


def test_redirects_are_not_followed_and_carry_no_credentials(client: sc.Client, fake: FakeActionsService) -> None:
    with FakeActionsService() as elsewhere:
        target = f"{elsewhere.actions_url}_apis/distributedtask/pools/0/agents/1"
        fake.inject("get_runner", Fault.respond(302, headers={"Location": target}))
        with pytest.raises(sc.APIError, match="redirect") as info:
            client.get_runner(1)
        assert info.value.status == 302 and elsewhere.count() == 0


@pytest.mark.slow  # benchmark-like: a generous memory bound, not a timing
def test_a_two_hundred_mib_body_is_refused_without_reading_it(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock)
    client.get_runner_by_name("warm")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fake.inject("get_runner_by_name", Fault.huge(200 * 1024 * 1024))
    with pytest.raises(sc.ResponseError, match="exceeds"):
        client.get_runner_by_name("x")
    fake.inject("get_runner_by_name", Fault.huge(200 * 1024 * 1024, chunked=True))
    with pytest.raises(sc.ResponseError, match="exceeds"):
        client.get_runner_by_name("x")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024  # far below the 200 MiB sent: the body is never held
    client.close()


def test_a_debug_log_of_a_rough_run_contains_no_secret(fake: FakeActionsService, clock: FakeClock,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    secrets: set[str] = {fake.token}
    with caplog.at_level(logging.DEBUG):
        client = make_client(fake, clock)
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="secret"))
        session = client.message_session(scale_set.id)
        secrets.add(session.session.message_queue_access_token)
        fake.queue_job(scale_set.id)
        fake.expire_queue_tokens()
        message = session.get_message(0, 1)
        secrets.add(session.session.message_queue_access_token)
        assert message is not None
        fake.evict_session(scale_set.id)
        session.delete_message(message.message_id)
        secrets.add(session.session.message_queue_access_token)
        jit = client.generate_jit_runner_config(sc.JitRunnerSetting(name="r"), scale_set.id)
        secrets.add(jit.encoded_jit_config)
        admin = client._admin.peek()
        assert admin is not None
        secrets.add(admin.token.reveal())
        fake.inject("get_runner", Fault.respond(500, f"echoing {fake.token}", content_type="text/plain"), times=5)
        with pytest.raises(sc.ScalesetError) as info:
            client.get_runner(1)
        report = repr(client.health()) + repr(session) + repr(client) + str(info.value)
        session.close()
        client.close()
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records) + report
    assert len(caplog.records) > 20
    leaked = [s[:8] + "…" for s in secrets if s and s in text]
    assert leaked == []


def test_a_proxy_demanding_credentials_is_a_clear_error_and_works_with_them(
        tls_fake: FakeActionsService, ca: trustme.CA, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with ForwardProxy(credentials="scaler:s3cret-pass") as proxy:
        address = proxy.url.removeprefix("http://")
        with sc.Client(tls_fake.config_url, token=tls_fake.token, verify=str(bundle),
                       proxies={"https": proxy.url}) as client:
            with pytest.raises(sc.TransportError, match="requires authentication") as info:
                client.get_runner(1)
            assert client.attempts_sent == 1 and "s3cret" not in str(info.value)
        with sc.Client(tls_fake.config_url, token=tls_fake.token, verify=str(bundle),
                       proxies={"https": f"http://scaler:s3cret-pass@{address}"}) as client:
            assert client.get_runner_by_name("x") is None
