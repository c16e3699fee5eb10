"""Tokens rotated outside the process: ``Client(token_provider=...)`` asks for the current token
whenever the admin token is renewed, once for all threads, and again when GitHub answers 401;
a provider that fails is asked again and then gives a clear ``AuthenticationError``; one that
says "later" (``TransientError``) is waited out by a listener. Over sockets, against the fake,
counted at the fake and at the provider, never by sleeping."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._cli import TokenFile, main
from scaleset_client.testing import FakeActionsService, FakeClock

from .conftest import run_together


class Provider:
    """Hands out ``current`` (after what ``queue`` holds; raising what ``fail`` holds first), counting calls."""

    def __init__(self, current: str) -> None:
        self.current = current
        self.calls = 0
        self.fail: list[BaseException] = []
        self.queue: list[str] = []  # handed out before ``current``, one per call
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            self.calls += 1
            if self.fail:
                raise self.fail.pop(0)
            return self.queue.pop(0) if self.queue else self.current


def _client(fake: FakeActionsService, clock: FakeClock, provider: Provider) -> sc.Client:
    return sc.Client(fake.config_url, token_provider=provider, clock=clock, timeout=(2.0, 5.0),
                     long_poll_timeout=5.0)


def test_the_provider_is_asked_on_every_renewal_and_its_token_sent(fake: FakeActionsService,
                                                                   clock: FakeClock) -> None:
    provider = Provider(fake.token)
    with _client(fake, clock, provider) as client:
        assert client.get_runner_by_name("nobody") is None
        assert provider.calls == 1
        assert fake.requests("registration_token")[0].headers["Authorization"] == f"Bearer {fake.token}"
        client.get_runner_by_name("nobody")
        assert provider.calls == 1  # the admin token is still good: no renewal, no call
        clock.advance(fake.admin_token_ttl)  # the admin token lapses: renewed, so the provider is asked
        client.get_runner_by_name("nobody")
    assert provider.calls == 2 == fake.count("registration_token")


def test_a_401_from_the_actions_service_asks_the_provider_again(fake: FakeActionsService, clock: FakeClock) -> None:
    provider = Provider(fake.token)
    with _client(fake, clock, provider) as client:
        client.get_runner_by_name("nobody")
        fake.expire_admin_tokens()  # revoked server side while the client still trusts its expiry
        assert client.get_runner_by_name("nobody") is None
    assert provider.calls == 2 and fake.count("registration_token") == 2


def test_a_token_rotated_behind_our_back_is_picked_up_on_the_401(fake: FakeActionsService, clock: FakeClock) -> None:
    old, new = fake.token, "ghp_rotatedROTATED0123456789abcdefghijkl"
    provider = Provider(old)
    with _client(fake, clock, provider) as client:
        client.get_runner_by_name("nobody")
        fake.token = new  # GitHub now takes only the new token ...
        provider.queue, provider.current = [old], new  # ... the provider's cache lags one call behind
        clock.advance(fake.admin_token_ttl)
        fake.clear_log()
        assert client.get_runner_by_name("nobody") is None
    auths = [r.headers["Authorization"] for r in fake.requests("registration_token")]
    assert auths == [f"Bearer {old}", f"Bearer {new}"]
    assert provider.calls == 3


def test_a_rejected_token_the_provider_still_returns_is_an_authentication_error(
        fake: FakeActionsService, clock: FakeClock) -> None:
    provider = Provider("ghp_revokedREVOKED0123456789abcdefghijkl")
    with _client(fake, clock, provider) as client, pytest.raises(sc.AuthenticationError) as info:
        client.get_runner(1)
    assert "token_provider" in str(info.value) and provider.current not in str(info.value)
    assert provider.calls == 2 and fake.count("registration_token") == 1


def test_threads_needing_a_token_together_ask_the_provider_once(fake: FakeActionsService, clock: FakeClock) -> None:
    provider = Provider(fake.token)
    with _client(fake, clock, provider) as client:
        results = run_together(16, lambda: client.get_runner_by_name("nobody"))
        assert results == [None] * 16
        assert provider.calls == 1 == fake.count("registration_token")
        fake.expire_admin_tokens()
        results = run_together(16, lambda: client.get_runner_by_name("nobody"))
    assert results == [None] * 16
    assert provider.calls == 2 == fake.count("registration_token")


def test_a_provider_that_keeps_failing_is_asked_three_times_then_an_authentication_error(
        fake: FakeActionsService, clock: FakeClock) -> None:
    provider = Provider(fake.token)
    provider.fail = [OSError(2, "No such file or directory")] * 3
    with _client(fake, clock, provider) as client, pytest.raises(sc.CredentialSourceError) as info:
        client.get_runner(1)
    assert isinstance(info.value, sc.AuthenticationError)
    assert provider.calls == 3 and list(clock.sleeps)[:2] == [0.25, 0.5]
    assert str(info.value).startswith("token_provider failed 3 times; last: FileNotFoundError")
    assert fake.count("registration_token") == 0


def test_a_provider_that_fails_once_is_asked_again(fake: FakeActionsService, clock: FakeClock) -> None:
    provider = Provider(fake.token)
    provider.fail = [RuntimeError("vault agent restarting")]
    with _client(fake, clock, provider) as client:
        assert client.get_runner_by_name("nobody") is None
    assert provider.calls == 2 and fake.count("registration_token") == 1


@pytest.mark.parametrize("bad", [None, "", "ghp_with space", b"ghp_bytes"])
def test_a_provider_returning_no_usable_token_fails_without_showing_it(fake: FakeActionsService, clock: FakeClock,
                                                                      bad: object) -> None:
    provider = Provider(bad)  # type: ignore[arg-type]
    with _client(fake, clock, provider) as client, pytest.raises(sc.CredentialSourceError) as info:
        client.get_runner(1)
    assert provider.calls == 3 and "token_provider" in str(info.value)
    assert "ghp_" not in str(info.value)


def test_a_provider_saying_later_is_transient_at_once(fake: FakeActionsService, clock: FakeClock) -> None:
    provider = Provider(fake.token)
    later = sc.TransientError("vault sealed")
    later.set_retry(retry_after=20.0, now=clock.wall())
    provider.fail = [later]
    with _client(fake, clock, provider) as client, pytest.raises(sc.TokenUnavailableError) as info:
        client.get_runner(1)
    assert isinstance(info.value, sc.TransientError) and info.value.retry_after == 20.0
    assert provider.calls == 1 and fake.count("registration_token") == 0


def test_a_listener_waits_out_a_provider_that_says_later(fake: FakeActionsService, clock: FakeClock) -> None:
    provider = Provider(fake.token)
    with _client(fake, clock, provider) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="rotating"))
        fake.queue_job(scale_set.id)
        fake.expire_admin_tokens()
        provider.fail = [sc.TokenUnavailableError("token file is being replaced")] * 3
        seen: list[int] = []

        class Scaler:
            def handle_job_started(self, job: object) -> None: ...

            def handle_job_completed(self, job: object) -> None: ...

            def handle_desired_runner_count(self, count: int) -> int:
                seen.append(count)
                return count

        sc.Listener(client, sc.ListenerConfig(scale_set.id, 5)).run(Scaler(), until_idle=True)
    assert seen and seen[-1] == 1  # it got through once the provider had a token again
    assert provider.calls == 2 + 3  # the scale set, three "later"s, then the renewal that worked
    assert clock.total_slept > 0


def test_token_and_provider_are_exclusive_and_the_provider_must_be_callable() -> None:
    with pytest.raises(sc.ConfigError, match="token and token_provider"):
        sc.Client("https://github.com/org", token="ghp_abcdef", token_provider=lambda: "ghp_abcdef")
    with pytest.raises(sc.ConfigError, match="callable"):
        sc.Client("https://github.com/org", token_provider="ghp_abcdef")  # type: ignore[arg-type]


def test_the_provided_token_never_reaches_a_log_or_repr(fake: FakeActionsService, clock: FakeClock,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    provider = Provider(fake.token)
    caplog.set_level(logging.DEBUG)
    with _client(fake, clock, provider) as client:
        client.get_runner_by_name("nobody")
        fake.expire_admin_tokens()
        client.get_runner_by_name("nobody")
        text = caplog.text + repr(client) + str(client.health())
        assert "auth=token_provider" in repr(client)
    assert provider.calls == 2
    assert fake.token not in text


# -- the CLI: a token file, read again when it changes -------------------------------------------
def test_a_token_file_is_read_again_only_when_it_changes(fake: FakeActionsService, clock: FakeClock,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(fake.token + "\n")
    token_file = TokenFile(str(path))
    with sc.Client(fake.config_url, token_provider=token_file, clock=clock, timeout=(2.0, 5.0)) as client:
        client.get_runner_by_name("nobody")
        fake.expire_admin_tokens()
        client.get_runner_by_name("nobody")
        assert token_file.reads == 1 and fake.count("registration_token") == 2  # asked twice, read once
        new = "ghp_mountedMOUNTED0123456789abcdefghijkl"
        staged = tmp_path / "token.new"
        staged.write_text(new)
        os.replace(staged, path)  # as the kubelet swaps a secret volume: a new file under the old name
        fake.token = new
        fake.expire_admin_tokens()
        assert client.get_runner_by_name("nobody") is None
    assert token_file.reads == 2
    assert fake.requests("registration_token")[-1].headers["Authorization"] == f"Bearer {new}"


def test_a_token_file_that_vanishes_is_waited_for_not_fatal(tmp_path: Path) -> None:
    token_file = TokenFile(str(tmp_path / "absent"))
    with pytest.raises(sc.TokenUnavailableError, match="cannot be read now"):
        token_file()
    with pytest.raises(sc.ConfigError, match="cannot be read"):
        token_file.check()  # at start it is a configuration error


def test_the_cli_runs_on_a_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_TOKEN", "GH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with FakeActionsService(long_poll_hold=0.05) as fake:
        path = tmp_path / "token"
        path.write_text(fake.token)
        code = main(["--url", fake.config_url, "--token-file", str(path), "--scale-set-name", "from-file", "--once",
                     "--log-level", "WARNING"])
        assert code == 0
        assert fake.requests("registration_token")[0].headers["Authorization"] == f"Bearer {fake.token}"
        assert [s.name for s in fake_scale_sets(fake)] == ["from-file"]
        assert main(["--url", fake.config_url, "--token-file", str(tmp_path / "absent"), "--scale-set-name", "x",
                     "--once", "--log-level", "WARNING"]) == 2


def fake_scale_sets(fake: FakeActionsService) -> list[sc.RunnerScaleSet]:
    with sc.Client(fake.config_url, token=fake.token) as client:
        return client.list_runner_scale_sets()
