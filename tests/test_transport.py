"""The resilience adapter over real sockets: pools, retries, hints, deadlines and bad bodies."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client, wait_until


def test_hundred_calls_use_one_connection_per_origin(client: sc.Client, fake: FakeActionsService,
                                                    scale_set: sc.RunnerScaleSet) -> None:
    session = client.message_session(scale_set.id)
    for _ in range(100):
        client.get_runner_by_name("x")
        session.get_message(0, 1)
    assert fake.count("get_runner_by_name") == 100 and fake.count("get_message") == 100
    assert (fake.connections("github"), fake.connections("actions"), fake.connections("broker")) == (1, 1, 1)
    session.close()


def test_connection_closed_by_the_server_while_idle_is_replaced_silently(client: sc.Client,
                                                                        fake: FakeActionsService) -> None:
    client.get_runner_by_name("x")
    assert fake.cut_connections("actions") == 1  # returns once the server has shut the socket down
    # Whether the pool sees the close before sending (a new connection) or only when the send fails (the
    # stale-connection retry, pinned separately below), the caller sees one answer and the fake one request.
    assert client.get_runner_by_name("x") is None
    assert fake.connections("actions") == 2 and fake.count("get_runner_by_name") == 2


def test_kept_alive_connection_dropped_before_answering_is_retried_once_at_once(
        client: sc.Client, fake: FakeActionsService, clock: FakeClock) -> None:
    client.get_runner_by_name("warm")
    fake.inject("get_runner_by_name", Fault.drop())  # the server reads the request, closes, never answers
    assert client.get_runner_by_name("x") is None
    # one extra request on a new connection, sent without a backoff and without a breaker failure
    assert fake.count("get_runner_by_name") == 3 and fake.connections("actions") == 2
    assert len(clock.sleeps) == 0
    fake.inject("get_runner_by_name", Fault.drop(), Fault.drop())  # the second drop in one call is a failure
    assert client.get_runner_by_name("x") is None
    assert fake.count("get_runner_by_name") == 6 and len(clock.sleeps) == 1


def test_post_dropped_before_answering_is_not_resent(client: sc.Client, fake: FakeActionsService,
                                                    scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("generate_jit_runner_config", Fault.drop())
    with pytest.raises(sc.TransportError) as info:
        client.generate_jit_runner_config(sc.JitRunnerSetting(name="r"), scale_set.id)
    assert info.value.delivered is None and fake.count("generate_jit_runner_config") == 1


def test_5xx_is_retried_with_backoff_then_succeeds(client: sc.Client, fake: FakeActionsService,
                                                   clock: FakeClock) -> None:
    fake.inject("get_runner_by_name", Fault.respond(503), Fault.respond(502), Fault.respond(500))
    assert client.get_runner_by_name("x") is None
    assert fake.count("get_runner_by_name") == 4 and len(clock.sleeps) == 3


def test_retries_run_out_with_the_last_status_and_body(client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject_always("get_runner", Fault.error(503, "", "overloaded", headers={"ActivityId": "last-one"}))
    with pytest.raises(sc.RetryExhaustedError) as info:
        client.get_runner(1)
    error = info.value
    assert error.attempts == 5 and error.status == 503 and fake.count("get_runner") == 5
    assert isinstance(error.last_error, sc.APIError) and error.last_error.activity_id == "last-one"
    assert error.last_error.message == "overloaded" and "overloaded" in str(error)


def test_post_failing_with_5xx_is_not_repeated(client: sc.Client, fake: FakeActionsService,
                                               scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("generate_jit_runner_config", Fault.respond(500))
    with pytest.raises(sc.APIError):
        client.generate_jit_runner_config(sc.JitRunnerSetting(name="r"), scale_set.id)
    assert fake.count("generate_jit_runner_config") == 1


def test_post_that_timed_out_after_sending_is_not_repeated(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock, timeout=(2.0, 0.5))
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
    fake.inject("create_session", Fault.hang(2.0))
    with pytest.raises(sc.TransportError) as info:
        client.message_session(scale_set.id)
    assert info.value.delivered is None and fake.count("create_session") == 1
    client.close()


def test_refused_connections_are_retried_even_for_posts(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock)
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
    fake.stop("actions")
    with pytest.raises(sc.RetryExhaustedError) as info:
        client.generate_jit_runner_config(sc.JitRunnerSetting(name="r"), scale_set.id)
    assert info.value.attempts == 5 and info.value.status == 0
    assert isinstance(info.value.last_error, sc.TransportError) and info.value.last_error.delivered is False
    client.close()


def test_empty_and_garbage_200_bodies_are_retried(client: sc.Client, fake: FakeActionsService,
                                                  scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.queue_job(scale_set.id)
        fake.inject("get_message", Fault.empty(), Fault.garbage())
        message = session.get_message(0, 1)
        assert message is not None and fake.count("get_message") == 3


def test_truncated_body_is_a_retried_failure(client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject("get_runner_by_name", Fault.truncated())
    assert client.get_runner_by_name("x") is None
    assert fake.count("get_runner_by_name") == 2


def test_oversized_body_is_a_response_error_not_memory_error(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(max_response_bytes=64 * 1024))
    client.get_runner_by_name("warm")
    fake.inject("get_runner_by_name", Fault.huge(50 * 1024 * 1024))
    with pytest.raises(sc.ResponseError, match="exceeds"):
        client.get_runner_by_name("x")
    assert client.get_runner_by_name("x") is None  # the connection was discarded, the next call works
    client.close()


def test_retry_after_holds_every_thread_off_the_origin(client: sc.Client, fake: FakeActionsService,
                                                       clock: FakeClock) -> None:
    client.get_runner_by_name("warm")
    fake.inject("get_runner_by_name", Fault.respond(429, headers={"Retry-After": "2"}))
    start = clock.monotonic()
    assert client.get_runner_by_name("x") is None
    assert clock.monotonic() - start >= 2.0
    sent = [r for r in fake.requests("get_runner_by_name")]
    assert len(sent) == 3 and sent[1].fault == "respond" and sent[2].fault == ""


def test_429_on_a_post_is_retried_after_the_hint(client: sc.Client, fake: FakeActionsService,
                                                 scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("generate_jit_runner_config", Fault.respond(429, headers={"Retry-After": "1"}))
    jit = client.generate_jit_runner_config(sc.JitRunnerSetting(name="r"), scale_set.id)
    assert jit.runner.name == "r" and fake.count("generate_jit_runner_config") == 2


def test_hint_longer_than_allowed_raises_rate_limited_with_retry_at(client: sc.Client, fake: FakeActionsService,
                                                                    clock: FakeClock) -> None:
    client.get_runner_by_name("warm")
    fake.inject("get_runner_by_name", Fault.respond(429, headers={"Retry-After": "3600"}))
    with pytest.raises(sc.RateLimitedError) as info:
        client.get_runner_by_name("x")
    assert info.value.retry_at is not None and info.value.retry_at >= clock.wall() + 3600
    calls = fake.count("get_runner_by_name")
    with pytest.raises(sc.RateLimitedError):  # the gate holds: nothing is sent
        client.get_runner_by_name("x")
    assert fake.count("get_runner_by_name") == calls


def test_github_rate_limit_403_waits_for_reset(client: sc.Client, fake: FakeActionsService, clock: FakeClock) -> None:
    reset = int(clock.wall()) + 30
    fake.inject("registration_token", Fault.respond(403, json_body={"message": "API rate limit exceeded"},
                                                    headers={"x-ratelimit-remaining": "0",
                                                             "x-ratelimit-reset": str(reset)}))
    start = clock.wall()
    assert client.get_runner_by_name("x") is None
    assert clock.wall() >= reset and clock.wall() - start < 33


def test_secondary_rate_limit_waits_at_least_a_minute(client: sc.Client, fake: FakeActionsService,
                                                      clock: FakeClock) -> None:
    fake.inject("registration_token", Fault.respond(403, json_body={
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}))
    start = clock.monotonic()
    assert client.get_runner_by_name("x") is None
    assert clock.monotonic() - start >= 60


def _finishes(call: Callable[[], object], bound: float = 30.0) -> list[object]:
    """Run ``call`` in a thread; return [result or exception] once it ends, or [] if it is still running
    after ``bound`` seconds (a safety bound, not a timing assertion)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # returned to the test
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=bound)
    return outcome


def test_hung_endpoint_ends_by_the_call_deadline() -> None:
    with FakeActionsService(long_poll_hold=0.05) as fake:
        # The read timeout (60 s) is far past the deadline (1.5 s) and the safety bound (20 s): without the
        # deadline the one request would still be waiting when the bound ends the wait.
        client = sc.Client(fake.config_url, token=fake.token, timeout=(1.0, 60.0),
                           resilience=sc.ResilienceConfig(retry=sc.RetryConfig(deadline=1.5, backoff_base=0.05)))
        client.get_runner_by_name("warm")
        fake.inject_always("get_runner_by_name", Fault.hang(3600))  # the server never answers
        outcome = _finishes(lambda: client.get_runner_by_name("x"), bound=20.0)
        sent = fake.count("get_runner_by_name")  # before the hangs are released: the request is still held
        fake.release_hangs()
        client.close()
    assert len(outcome) == 1 and isinstance(outcome[0], sc.RetryExhaustedError), outcome
    assert "deadline" in str(outcome[0]) and outcome[0].attempts == 1
    assert sent == 2  # the warm-up and the one held request: nothing answered it, nothing was resent


def test_dripping_body_is_cut_at_the_attempt_deadline() -> None:
    with FakeActionsService(long_poll_hold=0.05) as fake:
        client = sc.Client(fake.config_url, token=fake.token, timeout=(1.0, 1.0),
                           resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1)))
        client.get_runner_by_name("warm")
        # an hour of bytes, each one within the read timeout
        fake.inject("get_runner_by_name", Fault.drip(0.3, size=12_000))
        outcome = _finishes(lambda: client.get_runner_by_name("x"))
        fake.release_hangs()
        client.close()
    assert len(outcome) == 1 and isinstance(outcome[0], sc.ScalesetError)
    assert "attempt deadline" in str(outcome[0]) or "read timeout" in str(outcome[0])


def test_close_aborts_a_long_poll_blocked_in_another_thread() -> None:
    with FakeActionsService(long_poll_hold=3600) as fake:  # an empty poll would be held for an hour
        client = sc.Client(fake.config_url, token=fake.token, long_poll_timeout=7200)
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        session = client.message_session(scale_set.id)
        outcome: list[object] = []
        poller = threading.Thread(target=lambda: outcome.append(_poll(session)), daemon=True)
        poller.start()
        wait_until(lambda: fake.count("get_message") > 0)
        client.close()
        poller.join(timeout=30)
        fake.release_hangs()
    assert not poller.is_alive()  # ended by close(), not by the hour-long hold
    assert len(outcome) == 1 and isinstance(outcome[0], sc.ScalesetError)


def _poll(session: sc.MessageSession) -> object:
    try:
        return session.get_message(0, 1)
    except sc.ScalesetError as exc:
        return exc


def test_tls_to_a_plain_http_server_is_a_clear_transport_error(fake: FakeActionsService) -> None:
    url = fake.config_url.replace("http://", "https://")
    with sc.Client(url, token=fake.token, timeout=(1.0, 1.0)) as client, pytest.raises(sc.TransportError) as info:
        client.get_runner(1)
    assert "TLS" in str(info.value) and fake.token not in str(info.value)


def test_retry_after_keeps_every_thread_off_the_origin_until_the_hint(fake: FakeActionsService,
                                                                      clock: FakeClock) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1)))
    client.get_runner_by_name("warm")
    fake.clear_log()
    fake.inject("get_runner_by_name", Fault.respond(429, headers={"Retry-After": "2"}))
    with pytest.raises(sc.RateLimitedError):
        client.get_runner_by_name("first")  # no retry allowed: the gate stays armed
    throttled_at = fake.requests("get_runner_by_name")[0].time
    threads = [threading.Thread(target=client.get_runner_by_name, args=("t",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    later = fake.requests("get_runner_by_name")[1:]
    assert len(later) == 8 and all(r.time >= throttled_at + 2.0 for r in later)
    client.close()
