"""Adapter promises the mutation run showed no test pinned, seen by the caller (error kind and
text), at the fake (requests counted) and in the breakers' public state. Time is a FakeClock."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client, wait_until


def test_a_call_whose_caller_deadline_passed_sends_nothing_and_says_so(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    fake.clear_log()  # the admin token is held already (the scale set was created)
    with client.deadline(0), pytest.raises(sc.DeadlineExceededError) as info:
        client.get_runner_scale_set_by_id(scale_set.id)
    assert str(info.value).startswith("GET http") and str(info.value).endswith(": the caller's deadline passed")
    assert info.value.delivered is False and fake.count() == 0


def test_a_scope_cancelled_without_a_reason_says_cancelled(client: sc.Client, fake: FakeActionsService,
                                                           scale_set: sc.RunnerScaleSet) -> None:
    fake.clear_log()
    with client.deadline(None) as scope:
        scope.cancel("")
        with pytest.raises(sc.CallCancelledError) as info:
            client.get_runner_scale_set_by_id(scale_set.id)
    assert " was cancelled (cancelled)" in str(info.value) and fake.count() == 0


def test_a_200_without_json_is_a_breaker_failure_named_as_such(client: sc.Client, fake: FakeActionsService,
                                                               scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("get_runner_scale_set_by_id", Fault.respond(200, b"", content_type="application/json"))
    assert client.get_runner_scale_set_by_id(scale_set.id) is not None  # retried, then answered
    assert fake.count("get_runner_scale_set_by_id") == 2
    reasons = {b.operation_class: b.last_failure_reason for b in client.circuit_breakers.all()}
    assert reasons["admin"] == "HTTP 200 with an empty or non-JSON body"


@pytest.mark.parametrize("size,oversized", [(4096, False), (4097, True)])
def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(
        fake: FakeActionsService, clock: FakeClock, size: int, oversized: bool) -> None:
    """The cap counts the bytes of a body with no Content-Length (chunked): at most the limit."""
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(max_response_bytes=4096))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        with client.message_session(scale_set.id) as session:
            fake.queue_job(scale_set.id)
            message = session.get_message(0, 1)
            assert message is not None
            # An ack answered 200 (not 204) with a body: refused for its status, or for its size.
            fake.inject("delete_message", Fault.huge(size, chunked=True))
            with pytest.raises(sc.APIError if not oversized else sc.ResponseError) as info:
                session.delete_message(message.message_id)
            assert ("exceeds the 4096-byte limit" in str(info.value)) is oversized
    finally:
        client.close()


def test_an_oversized_probe_answer_frees_its_probe_without_judging_the_service(
        fake: FakeActionsService, clock: FakeClock) -> None:
    """A body over the cap says nothing about the service's health: the half-open probe that got
    it is released (neutral), so its lease never expires into a failed probe that re-opens the circuit."""
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(max_response_bytes=4096))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))

        def admin_state() -> tuple[str, str]:
            [breaker] = [b for b in client.circuit_breakers.all() if b.operation_class == "admin"]
            return breaker.state.value, breaker.last_failure_reason

        fake.inject_always("get_runner_scale_set_by_id", Fault.error(503, message="down"))
        with pytest.raises(sc.ScalesetError):
            client.get_runner_scale_set_by_id(scale_set.id)
        assert admin_state()[0] == "open"
        fake.clear_faults("get_runner_scale_set_by_id")
        clock.advance(120.0)  # the break is over: the next call is the probe
        fake.inject("get_runner_scale_set_by_id", Fault.huge(8000))
        with pytest.raises(sc.ResponseError, match="exceeds the 4096-byte limit"):
            client.get_runner_scale_set_by_id(scale_set.id)
        clock.advance(600.0)  # far past any probe lease
        assert admin_state() == ("half_open", "HTTP 503")
        assert client.get_runner_scale_set_by_id(scale_set.id) is not None  # the next probe goes out
        assert admin_state()[0] == "closed"
    finally:
        client.close()


def test_an_attempt_cut_by_the_calls_own_deadline_says_how_many_attempts_and_which_deadline() -> None:
    """Real time (about 1 s): a hung attempt is cut by the call's own deadline, not the caller's."""
    with FakeActionsService(long_poll_hold=0.05) as live:
        client = sc.Client(live.config_url, token=live.token, timeout=(2.0, 5.0),
                           resilience=sc.ResilienceConfig(retry=sc.RetryConfig(deadline=1.0)))
        try:
            client.get_runner_by_name("warm")
            live.inject("get_runner_by_name", Fault.hang(60.0))
            with pytest.raises(sc.RetryExhaustedError) as info:
                client.get_runner_by_name("x")
            assert str(info.value).startswith("get_runner_by_name gave up after 1 attempts: the call's 1s "
                                              "deadline passed")
            assert info.value.attempts == 1 and live.count("get_runner_by_name") == 2
        finally:
            live.release_hangs()
            client.close()


def test_an_attempt_cut_by_recover_does_not_use_up_an_attempt() -> None:
    """Real time (well under a second): recover() interrupts a black-holed attempt; the retry on a
    fresh connection is not counted, so a later 503 still has its retry."""
    with FakeActionsService(long_poll_hold=0.05) as live:
        client = sc.Client(live.config_url, token=live.token, timeout=(2.0, 3600.0),
                           resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.01)))
        outcome: list[object] = []
        try:
            client.get_runner_by_name("warm")
            live.inject("get_runner_by_name", Fault.hang(3600.0), Fault.error(503, message="busy"))
            worker = threading.Thread(target=lambda: outcome.append(_catch(lambda: client.get_runner_by_name("x"))))
            worker.start()
            wait_until(lambda: live.count("get_runner_by_name") == 2)
            client.recover()
            worker.join(timeout=30)
            assert outcome == [None]  # answered: no such runner
            assert live.count("get_runner_by_name") == 4  # warm-up, the hung one, the 503, the answer
        finally:
            live.release_hangs()
            client.close()


def _catch(work: Callable[[], object]) -> object:
    try:
        return work()
    except sc.ScalesetError as exc:
        return exc


def test_a_201_without_json_is_retried_like_a_200(client: sc.Client, fake: FakeActionsService,
                                                  scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("get_runner_scale_set_by_id", Fault.respond(201, b"", content_type="application/json"))
    assert client.get_runner_scale_set_by_id(scale_set.id) is not None
    assert fake.count("get_runner_scale_set_by_id") == 2


def test_a_rate_limit_longer_than_a_call_may_wait_says_when_to_come_back(
        client: sc.Client, fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """Retry-After 600 is more than max_hint_wait (120): raised at once with retry_at in the
    future; a second call meets the held gate and sends nothing, with the same answer."""
    fake.inject("get_runner_scale_set_by_id", Fault.respond(429, json_body={"message": "slow"},
                                                            headers={"Retry-After": "600"}))
    with pytest.raises(sc.RateLimitedError) as first:
        client.get_runner_scale_set_by_id(scale_set.id)
    assert first.value.retry_at is not None and 600.0 <= first.value.retry_at - clock.wall() <= 601.5
    with pytest.raises(sc.RateLimitedError) as second:
        client.get_runner_scale_set_by_id(scale_set.id)
    assert second.value.retry_at is not None and 595.0 <= second.value.retry_at - clock.wall() <= 601.5
    assert "more than this call may wait" in str(second.value)
    assert fake.count("get_runner_scale_set_by_id") == 1


def test_a_dropped_connection_names_the_method_and_url_it_failed_on(client: sc.Client, fake: FakeActionsService,
                                                                     scale_set: sc.RunnerScaleSet) -> None:
    fake.inject_always("get_runner_scale_set_by_id", Fault.drop())
    with pytest.raises(sc.RetryExhaustedError) as info:
        client.get_runner_scale_set_by_id(scale_set.id)
    fake.clear_faults("get_runner_scale_set_by_id")
    last = info.value.last_error
    assert isinstance(last, sc.TransportError) and last.method == "GET"
    assert str(last).startswith("GET http") and " failed: " in str(last)


class _NoJitterClock(FakeClock):
    """A fake clock whose jitter is always 0, so a wait lands exactly on a configured bound."""

    def random(self) -> float:
        return 0.0


def test_a_throttle_hint_of_exactly_the_longest_allowed_wait_is_waited_out(
        fake: FakeActionsService) -> None:
    """``max_hint_wait`` is the longest wait allowed, inclusive: a 429 asking for exactly that is
    slept out and the call goes through; it is not raised as RateLimitedError."""
    clock = _NoJitterClock()
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_hint_wait=2.0)))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="bound"))
        fake.inject("get_runner_scale_set_by_id", Fault.respond(429, headers={"Retry-After": "2"}))
        assert client.get_runner_scale_set_by_id(scale_set.id) is not None
        assert fake.count("get_runner_scale_set_by_id") == 2
    finally:
        client.close()


def test_a_short_backoff_fits_inside_a_short_caller_deadline(fake: FakeActionsService, clock: FakeClock) -> None:
    """A backoff sleeps what it says (10 ms here), never a floor of its own: the retry still fits
    inside the caller's 0.8 s and answers."""
    retry = sc.RetryConfig(backoff_base=0.01, backoff_max=0.01)
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(retry=retry))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="short"))
        fake.inject("get_runner_scale_set_by_id", Fault.respond(503))
        with client.deadline(0.8):
            assert client.get_runner_scale_set_by_id(scale_set.id) is not None
        assert fake.count("get_runner_scale_set_by_id") == 2
    finally:
        client.close()


def test_a_call_finding_a_refusing_origin_back_becomes_the_probe_before_the_break_ends(
        fake: FakeActionsService, clock: FakeClock) -> None:
    """The breaker opened on refused connects with a long break; once the origin accepts again, the
    next call's TCP look (due within 1.5 x reachability_check) lets it through as the probe."""
    breaker = sc.CircuitBreakerConfig(failure_threshold=1, open_duration=300.0, max_open_duration=600.0)
    config = sc.ResilienceConfig(circuit_breaker=breaker, retry=sc.RetryConfig(max_attempts=1))
    client = make_client(fake, clock, resilience=config)
    try:
        assert client.get_runner_scale_set(1, "absent") is None  # the admin token is held from here
        fake.stop("actions")
        with pytest.raises(sc.TransportError):
            client.get_runner_scale_set(1, "absent")  # refused: the breaker opens for 300 s
        fake.start_server("actions")
        clock.advance(1.5 * breaker.reachability_check + 1)  # a look is due; the break is not over
        before = fake.count("get_runner_scale_set")
        assert client.get_runner_scale_set(1, "absent") is None
        assert fake.count("get_runner_scale_set") == before + 1
    finally:
        client.close()


OP = "get_runner_scale_set"


def test_only_first_try_successes_refill_the_retry_budget(fake: FakeActionsService, clock: FakeClock) -> None:
    """A success earns back part of the retry budget only when it needed no retry: a retried
    success already cost a token, so letting it earn would let a flapping service keep the
    budget topped up. Seen as which 503s are retried (a second request at the fake) and which
    are raised at once (the budget is empty)."""
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(retry=sc.RetryConfig(budget=1.0)))
    try:
        assert client.get_runner_scale_set(1, "absent") is None  # the admin token is fetched here

        def fails_once() -> None:
            fake.inject(OP, Fault.error(503, message="busy"))

        fails_once()  # the one retry the budget holds: spent, and the retried success earns nothing
        before = fake.count(OP)
        assert client.get_runner_scale_set(1, "absent") is None
        assert fake.count(OP) == before + 2
        for _ in range(4):  # four first-try successes earn 4 x 0.2: still less than one retry
            assert client.get_runner_scale_set(1, "absent") is None
        fails_once()
        before = fake.count(OP)
        with pytest.raises(sc.ServerError) as info:
            client.get_runner_scale_set(1, "absent")
        assert info.value.status == 503 and fake.count(OP) == before + 1  # not retried: the budget is empty
        assert client.get_runner_scale_set(1, "absent") is None  # the fifth first-try success
        fails_once()
        before = fake.count(OP)
        assert client.get_runner_scale_set(1, "absent") is None  # retried again: the budget earned one back
        assert fake.count(OP) == before + 2
    finally:
        client.close()


@pytest.mark.timeout(30)
def test_a_connect_that_hangs_ends_at_the_connect_timeout_and_is_retried() -> None:
    """``Client(timeout=(connect, read))``: a connect that is neither answered nor refused (a server
    whose accept queue is full drops the SYN, as a black-holed address does) ends at the connect
    timeout, is retried, and the call says so; it does not wait the read timeout out."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue (never accepted): further SYNs are dropped
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(server.getsockname())
            fillers.append(filler)
        port = server.getsockname()[1]
        client = sc.Client(f"http://127.0.0.1:{port}/org", token="ghp_connect", timeout=(0.3, 60.0),
                           resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.05,
                                                                               deadline=10.0)))
        with client, pytest.raises(sc.RetryExhaustedError) as info:
            client.get_runner_group_by_name("default")
        assert info.value.attempts == 2
        assert str(info.value).endswith("registration-token failed: connecting timed out")
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_a_call_that_keeps_failing_makes_exactly_max_attempts_and_says_how_many(
        fake: FakeActionsService, clock: FakeClock) -> None:
    resilience = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=3, backoff_base=0.01))
    with make_client(fake, clock, resilience=resilience) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        attempts, retries = client.attempts_sent, client.retries_sent
        fake.inject_always("get_runner_scale_set_by_id", Fault.error(503))
        with pytest.raises(sc.RetryExhaustedError) as info:
            client.get_runner_scale_set_by_id(scale_set.id)
        assert fake.count("get_runner_scale_set_by_id") == 3 and info.value.attempts == 3
        assert str(info.value).startswith("get_runner_scale_set_by_id gave up after 3 attempts; last error: ")
        assert (client.attempts_sent - attempts, client.retries_sent - retries) == (3, 2)


@pytest.mark.timeout(30)
def test_more_concurrent_calls_than_pooled_connections_are_all_sent_at_once(fake: FakeActionsService) -> None:
    """``pool_maxsize`` bounds the idle connections kept, not the calls in flight: a burst of
    threads is never queued behind a small pool (each gets a connection of its own)."""
    client = sc.Client(fake.config_url, token=fake.token, pool_maxsize=2)
    try:
        group = client.get_runner_group_by_name("default")  # the admin token, before the burst
        fake.inject("get_runner_group_by_name", Fault.hang(), times=6)
        threads = [threading.Thread(target=client.get_runner_group_by_name, args=("default",)) for _ in range(6)]
        for thread in threads:
            thread.start()
        wait_until(lambda: fake.count("get_runner_group_by_name") == 7, timeout=15)  # all six held at once
        fake.release_hangs()
        for thread in threads:
            thread.join(15)
        assert group.id == 1 and not any(thread.is_alive() for thread in threads)
    finally:
        client.close()
