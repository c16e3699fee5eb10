"""The call seam from outside: what the Client, a message session and the registration chain
are given, and the one style of argument checks, as a caller or the fake service sees them; and
what the seam sends: no cookie comes back, a path is sent as named.
"""

from __future__ import annotations

import logging
import re
import threading

import pytest

import scaleset_client as sc
from scaleset_client._adapter import ResilienceAdapter
from scaleset_client._auth import AdminCredentials, GitHubCredentials
from scaleset_client._breaker import BreakerRegistry
from scaleset_client._calls import ActionsCalls, Calls
from scaleset_client._registration import Registration
from scaleset_client._session import MessageSession
from scaleset_client._urls import parse_config_url
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import make_client

URL = "https://github.com/org"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"long_poll_timeout": 0}, "long_poll_timeout must be a positive number, got 0"),
    ({"long_poll_timeout": True}, "long_poll_timeout must be a positive number, got True"),
    ({"long_poll_timeout": "75"}, "long_poll_timeout must be a positive number, got '75'"),
    ({"pool_maxsize": 0}, "pool_maxsize must be a positive integer, got 0"),
    ({"pool_maxsize": 2.0}, "pool_maxsize must be a positive integer, got 2.0"),
    ({"pool_maxsize": True}, "pool_maxsize must be a positive integer, got True"),
    ({"system_info": "me"}, "system_info must be a SystemInfo, not str"),
    ({"resilience": {}}, "resilience must be a ResilienceConfig, not dict"),
    ({"timeout": (1.0, 0)}, "timeout must be a positive number or a (connect, read) pair"),
])
def test_client_arguments_are_checked_in_one_style(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(sc.ConfigError) as caught:
        sc.Client(URL, token="ghp_x", **kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(("token", "app", "message"), [
    (None, None, "pass exactly one of token="),
    ("ghp_x", object(), "pass exactly one of token="),
    ("ghp x", None, "token must be a non-empty personal access token string without whitespace"),
    ("  ", None, "token must be a non-empty personal access token string without whitespace"),
    (None, "key", "app must be a GitHubAppAuth, not str"),
])
def test_credentials_are_checked_before_anything_is_built(token: object, app: object, message: str) -> None:
    with pytest.raises(sc.ConfigError, match=re.escape(message)):
        sc.Client(URL, token=token, app=app)  # type: ignore[arg-type]


def test_good_arguments_are_kept_as_given() -> None:
    with sc.Client(URL, token="ghp_x", long_poll_timeout=60, pool_maxsize=3) as client:
        assert client.long_poll_timeout == 60.0 and isinstance(client.long_poll_timeout, float)
        with pytest.raises(sc.ConfigError, match="info must be a SystemInfo, not NoneType"):
            client.set_system_info(None)  # type: ignore[arg-type]


def test_credentials_never_show_the_token() -> None:
    credentials = GitHubCredentials.from_arguments("ghp_seamsecret", None)
    assert credentials.pat is not None and credentials.pat.reveal() == "ghp_seamsecret"
    assert "ghp_seamsecret" not in repr(credentials)


def test_the_registration_chain_needs_only_the_seam_and_its_credentials(fake: FakeActionsService,
                                                                         clock: FakeClock) -> None:
    """No Client: a seam, the config URL, the credentials and a clock fetch an admin token."""
    config = sc.ResilienceConfig()
    closing = threading.Event()
    adapter = ResilienceAdapter(config=config, clock=clock, breakers=BreakerRegistry(config.circuit_breaker, clock),
                                timeout=(2.0, 5.0), closing=closing)
    calls = Calls(adapter=adapter, timeout=(2.0, 5.0), verify=True, proxies=None, closing=closing,
                  user_agent="seam-test/1", log=logging.getLogger("seam-test"))
    chain = Registration(calls, parse_config_url(fake.config_url), GitHubCredentials.from_arguments(fake.token, None),
                         clock)
    service_url, token = chain.fetch_admin_token()
    assert service_url.startswith("http://") and token
    assert fake.count("registration_token") == 1 and fake.count("runner_registration") == 1
    assert fake.requests("registration_token")[0].headers.get("User-Agent") == "seam-test/1"

    # The same seam, signed with those credentials, reaches the Actions service.
    service = ActionsCalls(calls, AdminCredentials(chain.fetch_admin_token, chain.server_time))
    response = service.actions_call("get_runner_by_name", "GET", "_apis/distributedtask/pools/0/agents",
                                    params={"agentName": "nobody"})
    assert service.json(response, "get_runner_by_name")["count"] == 0
    assert fake.count("runner_registration") == 2  # its own credentials: one more registration
    closing.set()
    calls.close()


def test_a_closed_seam_fails_fast_without_sending(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock)
    client.close()
    before = fake.count()
    with pytest.raises(sc.CallCancelledError, match="closed"):
        client.get_runner_by_name("x")
    assert fake.count() == before


def test_a_session_names_its_client_and_the_listener_takes_it(client: sc.Client,
                                                              scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        assert session.client is client
        listener = sc.Listener(session, sc.ListenerConfig(scale_set_id=scale_set.id, max_runners=2))
        assert listener.health().session_id == session.session.session_id


def test_a_session_opened_without_a_client_is_refused_by_the_listener(client: sc.Client,
                                                                      scale_set: sc.RunnerScaleSet) -> None:
    class Owner:  # a SessionOwner that is not a Client
        long_poll_timeout = 5.0
        config = client.config
        system_info = client.system_info
        resilience = client.resilience

    with MessageSession(Owner(), scale_set.id, calls=client._service) as session:
        assert session.active
        with pytest.raises(sc.ConfigError) as info:
            sc.Listener(session, sc.ListenerConfig(scale_set_id=scale_set.id, max_runners=2))
        assert str(info.value) == "Listener takes a MessageSession opened by a Client (client.message_session)"


def test_closing_a_session_takes_it_off_the_clients_books(client: sc.Client, scale_set: sc.RunnerScaleSet,
                                                           fake: FakeActionsService) -> None:
    session = client.message_session(scale_set.id)
    assert client.health().components["session"].status == "ok"
    session.close()
    assert client.health().components["session"].reason == "no message session open"
    assert fake.count("delete_session") == 1
    report = client.recover()
    assert "no message session is open" in report.skipped
    assert fake.count("refresh_session") == 0  # the closed session was not renewed


@pytest.mark.parametrize("installation_id", [0, True, 2**63, "7"])
def test_app_installation_id_is_checked_like_every_id(installation_id: object) -> None:
    with pytest.raises(sc.ConfigError,
                       match=re.escape(f"GitHubAppAuth.installation_id must be a positive integer, got "
                                       f"{installation_id!r}")):
        sc.GitHubAppAuth(client_id="Iv1.x", installation_id=installation_id, private_key="pem")  # type: ignore[arg-type]


OP = "get_runner_scale_set"


def test_a_cookie_the_service_sets_is_never_sent_back(client: sc.Client, fake: FakeActionsService) -> None:
    """The shared Session keeps no cookies: no state leaks from one call (or thread) to the next.
    (Pinned at the wire: today the seam's own request preparation would not attach the Session's
    jar either, so this fails only if both the refusing policy and that preparation change.)"""
    fake.inject(OP, Fault.respond(200, json_body={"count": 0, "value": []},
                                  headers={"Set-Cookie": "affinity=node-7; Path=/"}))
    assert client.get_runner_scale_set(1, "absent") is None
    assert client.get_runner_scale_set(1, "absent") is None
    sent = fake.requests(OP)
    assert len(sent) == 2
    assert all("cookie" not in {k.lower() for k in r.headers} for r in sent)


def test_a_repository_named_with_a_leading_dot_is_sent_as_named(clock: FakeClock) -> None:
    """A URL with a ``/.`` segment takes requests' full preparation; the repository ``.github``
    must still reach the service as it is spelled (a dot-led name is not a dot segment)."""
    with FakeActionsService(clock=clock, org="acme/.github", strict=True) as fake:
        client = make_client(fake, clock)
        try:
            with pytest.raises(sc.AuthenticationError, match=r"acme/\.github"):
                client.get_runner_group_by_name("default")  # the fake knows organizations only: a 404
            [sent] = fake.requests("registration_token")
            assert sent.path == "/api/v3/repos/acme/.github/actions/runners/registration-token"
            assert sent.method == "POST" and sent.headers.get("Authorization", "").startswith("Bearer ")
        finally:
            client.close()
