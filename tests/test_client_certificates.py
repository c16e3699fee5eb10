"""Mutual TLS: a client certificate, from files or PEM in memory, presented to every origin the
client talks to (GitHub's API, the Actions service, the broker), directly, through a CONNECT
proxy and to an HTTPS proxy that demands one; a missing or wrong certificate fails at once with
a clear error, never a retry storm. Real certificates (trustme), real sockets, the fake in its
mutual-TLS mode."""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

import scaleset_client as sc
from scaleset_client._cli import main
from scaleset_client.testing import FakeActionsService, FakeClock, ForwardProxy
from scaleset_client.testing._servers import require_client_certificate

from .conftest import WatchedClock, wait_until

CLIENT_NAME = "runner-client"


@pytest.fixture(scope="module")
def server_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def intermediate(server_ca: trustme.CA) -> trustme.CA:
    return server_ca.create_child_ca()


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_leaf(client_ca: trustme.CA) -> trustme.LeafCert:
    return client_ca.issue_cert("scaleset-client.example", common_name=CLIENT_NAME)


def _server_context(issuer: trustme.CA, client_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    issuer.issue_cert("127.0.0.1").configure_cert(context)  # leaf + intermediate, no root
    return require_client_certificate(context, client_ca.cert_pem.bytes())


@pytest.fixture
def mtls_fake(intermediate: trustme.CA, client_ca: trustme.CA) -> Iterator[FakeActionsService]:
    with FakeActionsService(clock=FakeClock(), long_poll_hold=0.05, strict=True,
                            ssl_context=_server_context(intermediate, client_ca)) as fake:
        yield fake


@pytest.fixture
def bundle(intermediate: trustme.CA, tmp_path: Path) -> str:
    """A CA bundle holding only the intermediate that issued the servers' certificate."""
    path = tmp_path / "intermediate-only.pem"
    intermediate.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def cert_files(client_leaf: trustme.LeafCert, tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    client_leaf.cert_chain_pems[0].write_to_path(str(cert))
    client_leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def _encrypted_key(leaf: trustme.LeafCert, password: bytes) -> bytes:
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(password))


def _client(fake: FakeActionsService, **kwargs: object) -> sc.Client:
    kwargs.setdefault("timeout", (2.0, 5.0))
    return sc.Client(fake.config_url, token=fake.token, clock=fake.clock, long_poll_timeout=5.0,
                     **kwargs)  # type: ignore[arg-type]


def _round_trip(client: sc.Client) -> None:
    """One call to each origin: GitHub's API (token), the Actions service, the broker."""
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="mtls"))
    with client.message_session(scale_set.id, "mtls") as session:
        assert session.get_message(0, 1) is None


def _seen(fake: FakeActionsService) -> dict[str, set[str]]:
    return {name: set(server.client_certificates) for name, server in fake.servers.items()}


# -- presented everywhere --------------------------------------------------------------------
def test_certificate_files_are_presented_to_every_origin(mtls_fake: FakeActionsService, bundle: str,
                                                         cert_files: tuple[str, str]) -> None:
    with _client(mtls_fake, verify=bundle, client_cert=cert_files) as client:
        _round_trip(client)
    seen = _seen(mtls_fake)
    assert all(len(subjects) == 1 and CLIENT_NAME in next(iter(subjects)) for subjects in seen.values()), seen
    assert all(server.tls_refused == 0 for server in mtls_fake.servers.values())


def test_a_single_file_with_certificate_and_key_works(mtls_fake: FakeActionsService, bundle: str,
                                                      client_leaf: trustme.LeafCert, tmp_path: Path) -> None:
    combined = tmp_path / "combined.pem"
    client_leaf.private_key_and_cert_chain_pem.write_to_path(str(combined))
    with _client(mtls_fake, verify=bundle, client_cert=str(combined)) as client:
        assert client.get_runner_by_name("nobody") is None


def test_pem_in_memory_with_a_key_password(mtls_fake: FakeActionsService, bundle: str,
                                           client_leaf: trustme.LeafCert, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password = "correct horse battery"
    cert = sc.ClientCertificate.from_pem(client_leaf.cert_chain_pems[0].bytes(),
                                         _encrypted_key(client_leaf, password.encode()), password)
    with _client(mtls_fake, verify=bundle, client_cert=cert) as client:
        _round_trip(client)
        assert password not in repr(cert) and "PRIVATE KEY" not in repr(cert) and password not in repr(client)
    assert all(CLIENT_NAME in " ".join(s) for s in _seen(mtls_fake).values())
    assert password not in caplog.text and "PRIVATE KEY" not in caplog.text


def test_a_tuple_of_pem_text_is_taken_as_pem(mtls_fake: FakeActionsService, bundle: str,
                                             client_leaf: trustme.LeafCert) -> None:
    pair = (client_leaf.cert_chain_pems[0].bytes().decode(), client_leaf.private_key_pem.bytes().decode())
    with _client(mtls_fake, verify=bundle, client_cert=pair) as client:
        assert client.get_runner_by_name("nobody") is None


def test_the_certificate_goes_through_a_connect_proxy(mtls_fake: FakeActionsService, bundle: str,
                                                      cert_files: tuple[str, str]) -> None:
    with ForwardProxy() as proxy, _client(mtls_fake, verify=bundle, client_cert=cert_files,
                                          proxies={"https": proxy.url}) as client:
        _round_trip(client)
        tunnels = {target for method, target in proxy.requests if method == "CONNECT"}
    assert tunnels == {f"127.0.0.1:{s.port}" for s in mtls_fake.servers.values()}
    assert all(CLIENT_NAME in " ".join(s) for s in _seen(mtls_fake).values())


class _TLSFront:
    """An HTTPS proxy that demands a client certificate: TLS (mutual) in front of a ForwardProxy."""

    def __init__(self, context: ssl.SSLContext, upstream: int) -> None:
        self.context, self.upstream = context, upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.peers: list[str] = []
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(raw,), daemon=True).start()

    def _relay(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.refused += 1
            raw.close()
            return
        self.peers.append(str(tls.getpeercert().get("subject")))
        with tls, socket.create_connection(("127.0.0.1", self.upstream), timeout=10) as up:
            while True:
                ready, _, _ = select.select([tls, up], [], [], 10)
                if not ready:
                    return
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    (up if sock is tls else tls).sendall(data)

    def close(self) -> None:
        self.listener.close()


def test_an_https_proxy_that_demands_a_certificate_gets_it(mtls_fake: FakeActionsService, bundle: str,
                                                           intermediate: trustme.CA, client_ca: trustme.CA,
                                                           cert_files: tuple[str, str]) -> None:
    with ForwardProxy() as proxy:
        front = _TLSFront(_server_context(intermediate, client_ca), int(proxy.url.rsplit(":", 1)[1]))
        try:
            with _client(mtls_fake, verify=bundle, client_cert=cert_files,
                         proxies={"https": f"https://127.0.0.1:{front.port}"}) as client:
                assert client.get_runner_by_name("nobody") is None
        finally:
            front.close()
    assert front.peers and all(CLIENT_NAME in p for p in front.peers) and front.refused == 0
    assert CLIENT_NAME in " ".join(mtls_fake.servers["actions"].client_certificates)


# -- missing or wrong: one clear failure, no retry storm ----------------------------------------
def _fails_once(fake: FakeActionsService, client: sc.Client) -> sc.TransportError:
    with pytest.raises(sc.TransportError) as info:
        client.get_runner(1)
    assert client.attempts_sent == 1  # refused TLS is not retried
    wait_until(lambda: fake.servers["github"].tls_refused == 1)  # counted just after the alert went out
    assert fake.servers["github"].accepted == 1
    assert fake.count() == 0  # no request was ever read
    return info.value


def test_no_certificate_where_one_is_required_fails_once(mtls_fake: FakeActionsService, bundle: str) -> None:
    with _client(mtls_fake, verify=bundle) as client:
        error = _fails_once(mtls_fake, client)
    assert "TLS" in str(error) and "certificate required" in str(error).lower()  # the server's alert, named
    assert "client_cert=" in str(error)  # and what to do about it


def test_a_certificate_from_an_unknown_ca_fails_once(mtls_fake: FakeActionsService, bundle: str,
                                                     tmp_path: Path) -> None:
    stranger = trustme.CA().issue_cert("scaleset-client.example", common_name="stranger")
    combined = tmp_path / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(combined))
    with _client(mtls_fake, verify=bundle, client_cert=str(combined)) as client:
        error = _fails_once(mtls_fake, client)
    assert "TLS" in str(error) and "alert" in str(error).lower()
    assert mtls_fake.servers["github"].client_certificates == []


def test_a_listener_waits_out_a_refused_certificate_without_a_storm(intermediate: trustme.CA,
                                                                     client_ca: trustme.CA, bundle: str) -> None:
    """Transient to a listener (an operator can fix it while it runs), but backed off: a handful of
    handshakes over ten minutes of fake time, not one per loop turn."""
    clock = WatchedClock()
    stop = threading.Event()
    with FakeActionsService(clock=clock, long_poll_hold=0.05,
                            ssl_context=_server_context(intermediate, client_ca)) as fake, \
            _client(fake, verify=bundle) as client:
        start = clock.monotonic()
        clock.watch = lambda _: stop.set() if clock.monotonic() - start > 600 else None
        runner = threading.Thread(target=sc.Listener(client, sc.ListenerConfig(1, 1)).run, args=(_NoScaler(), stop),
                                  daemon=True)
        runner.start()
        runner.join(timeout=10)
        assert not runner.is_alive()
        refused = fake.servers["github"].tls_refused
        assert fake.count() == 0
    assert stop.is_set()  # it was still waiting when the ten minutes were up
    assert 3 <= refused <= 30, refused


class _NoScaler:
    def handle_job_started(self, job: object) -> None:
        pass

    def handle_job_completed(self, job: object) -> None:
        pass

    def handle_desired_runner_count(self, count: int) -> int:
        return count


# -- refused at construction ---------------------------------------------------------------------
def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(sc.ConfigError, match="no such file"):
        sc.Client("https://github.com/org", token="ghp_x123456", client_cert=(str(tmp_path / "nope.pem"),
                                                                             str(tmp_path / "nope.key")))


def test_a_wrong_password_is_a_config_error_that_never_shows_it(client_leaf: trustme.LeafCert) -> None:
    cert = sc.ClientCertificate.from_pem(client_leaf.cert_chain_pems[0].bytes(),
                                         _encrypted_key(client_leaf, b"the-right-one"), "a-wrong-password")
    with pytest.raises(sc.ConfigError, match="password is wrong") as info:
        sc.Client("https://github.com/org", token="ghp_x123456", client_cert=cert)
    assert "a-wrong-password" not in str(info.value) and "the-right-one" not in str(info.value)


def test_an_encrypted_key_without_a_password_is_refused_not_prompted(client_leaf: trustme.LeafCert) -> None:
    pair = (client_leaf.cert_chain_pems[0].bytes(), _encrypted_key(client_leaf, b"secret-pass"))
    with pytest.raises(sc.ConfigError, match="encrypted: pass its password"):
        sc.Client("https://github.com/org", token="ghp_x123456", client_cert=pair)


def test_a_key_of_another_certificate_is_a_config_error(client_leaf: trustme.LeafCert,
                                                        client_ca: trustme.CA) -> None:
    other = client_ca.issue_cert("other.example")
    pair = (client_leaf.cert_chain_pems[0].bytes(), other.private_key_pem.bytes())
    with pytest.raises(sc.ConfigError, match="does not belong to the certificate") as info:
        sc.Client("https://github.com/org", token="ghp_x123456", client_cert=pair)
    assert "PRIVATE KEY" not in str(info.value)


def test_a_client_cert_of_the_wrong_type_is_a_config_error() -> None:
    with pytest.raises(sc.ConfigError, match="client_cert"):
        sc.Client("https://github.com/org", token="ghp_x123456", client_cert=42)  # type: ignore[arg-type]


# -- the CLI -----------------------------------------------------------------------------------
def test_the_cli_presents_client_cert_and_key_files(intermediate: trustme.CA, client_ca: trustme.CA, bundle: str,
                                                    cert_files: tuple[str, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)  # the CLI's CA, as for requests and curl
    with FakeActionsService(long_poll_hold=0.05, ssl_context=_server_context(intermediate, client_ca)) as fake:
        monkeypatch.setenv("GITHUB_TOKEN", fake.token)
        base = ["--url", fake.config_url, "--scale-set-name", "cli-mtls", "--once", "--log-level", "WARNING"]
        assert main([*base, "--client-cert", cert_files[0], "--client-key", cert_files[1]]) == 0
        assert all(CLIENT_NAME in " ".join(s) for s in _seen(fake).values())
        assert main([*base, "--client-cert", cert_files[0] + ".missing"]) == 2  # refused before any request
        assert main([*base, "--client-key", cert_files[1]]) == 2
