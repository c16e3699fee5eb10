"""Finding 4: a CA bundle that holds only the intermediate CA that issued the server's
certificate (common on GitHub Enterprise Server) is enough, as it is for the reference client."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService


@pytest.fixture(scope="module")
def intermediate() -> trustme.CA:
    return trustme.CA().create_child_ca()


@pytest.fixture
def chained_fake(intermediate: trustme.CA) -> Iterator[FakeActionsService]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    intermediate.issue_cert("127.0.0.1").configure_cert(context)  # leaf + intermediate, no root
    with FakeActionsService(long_poll_hold=0.05, ssl_context=context) as fake:
        yield fake


def _bundle(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "intermediate-only.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_stock_openssl_refuses_a_bundle_holding_only_the_intermediate(
        chained_fake: FakeActionsService, intermediate: trustme.CA, tmp_path: Path) -> None:
    # The control: without the partial-chain flag this bundle cannot verify the server.
    context = ssl.create_default_context(cafile=_bundle(intermediate, tmp_path))
    port = chained_fake.servers["github"].port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_a_bundle_holding_only_the_intermediate_is_trusted(
        chained_fake: FakeActionsService, intermediate: trustme.CA, tmp_path: Path) -> None:
    with sc.Client(chained_fake.config_url, token=chained_fake.token, verify=_bundle(intermediate, tmp_path),
                   timeout=(2.0, 5.0), long_poll_timeout=5.0) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="ghes"))
        with client.message_session(scale_set.id) as session:
            assert session.get_message(0, 1) is None
    assert chained_fake.count("create_runner_scale_set") == 1


def test_a_bundle_holding_an_unrelated_ca_is_still_refused(
        chained_fake: FakeActionsService, tmp_path: Path) -> None:
    with sc.Client(chained_fake.config_url, token=chained_fake.token, verify=_bundle(trustme.CA(), tmp_path),
                   timeout=(2.0, 5.0)) as client:
        with pytest.raises(sc.TransportError, match="TLS"):
            client.get_runner(1)
    assert chained_fake.count() == 0


def test_a_wrong_host_name_is_still_refused(intermediate: trustme.CA, tmp_path: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    intermediate.issue_cert("other.example").configure_cert(context)
    with FakeActionsService(ssl_context=context) as fake:
        with sc.Client(fake.config_url, token=fake.token, verify=_bundle(intermediate, tmp_path),
                       timeout=(2.0, 5.0)) as client:
            with pytest.raises(sc.TransportError):
                client.get_runner(1)
        assert fake.count() == 0
