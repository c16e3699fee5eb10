"""Server hints, the not-before gate and the retry budget, pinned where they are observed.

Hints are read off real responses (the fake answers a canned status, headers and body over a
socket); the gate and the budget are read through their own API on a FakeClock, through the
state file (``export_resilience_state``) and through the requests the fake counts.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterator

import pytest
import requests

import scaleset_client as sc
from scaleset_client._retry import (
    SECONDARY_MIN_WAIT,
    RateGate,
    RetryBudget,
    hint_seconds,
    is_throttle,
    parse_retry_after,
)
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import make_client

NOW = 1_800_000_000.0
Canned = Callable[..., requests.Response]
SECONDARY_BODY = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."


@pytest.fixture(scope="module")
def canned_service() -> Iterator[FakeActionsService]:
    # The answers' Date header is GitHub's clock, which date-form hints are measured against:
    # the fake's clock says NOW, as the hints below do.
    with FakeActionsService(clock=FakeClock(wall=NOW), long_poll_hold=0.05) as service:
        yield service


@pytest.fixture
def canned(canned_service: FakeActionsService) -> Iterator[Canned]:
    """``canned(status, headers, body)`` -> the real ``requests.Response`` the fake sent."""
    session = requests.Session()

    def get(status: int, headers: dict[str, str] | None = None, body: str = "") -> requests.Response:
        canned_service.inject("actions", Fault.respond(status, body, headers=headers))
        return session.get(canned_service.actions_url + "canned", timeout=5)

    yield get
    session.close()


# -- Retry-After values ----------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [
    ("5", 5.0), (" 1.5 ", 1.5), ("0", 0.0), ("0.5", 0.5), ("1e12", 10 * 365 * 86400.0),
    ("", None), ("   ", None), ("-1", None), ("nan", None), ("soon", None),
])
def test_retry_after_seconds(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_http_dates_count_from_the_wall_clock() -> None:
    later = email.utils.formatdate(NOW + 30, usegmt=True)
    earlier = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after(later, NOW) == 30.0
    assert parse_retry_after(earlier, NOW) == 0.0  # already past: go now


# -- what counts as a throttle ---------------------------------------------------------------------
def test_throttle_classification(canned: Canned) -> None:
    assert is_throttle(canned(429)) is True
    assert is_throttle(canned(403, {"x-ratelimit-remaining": " 0 "})) is True
    assert is_throttle(canned(403, {"Retry-After": "5"})) is True
    assert is_throttle(canned(403, body=SECONDARY_BODY)) is True
    assert is_throttle(canned(403, body="You have triggered an abuse detection mechanism")) is True
    assert is_throttle(canned(403, {"x-ratelimit-remaining": "1"}, "Resource not accessible")) is False
    assert is_throttle(canned(403, body="Must have admin rights to Repository.")) is False
    assert is_throttle(canned(503, {"Retry-After": "5"})) is False


def test_only_the_start_of_a_body_is_searched_for_the_secondary_marker(canned: Canned) -> None:
    marker = "secondary rate limit"
    assert is_throttle(canned(403, body="x" * (2048 - len(marker)) + marker)) is True  # ends at byte 2048
    assert is_throttle(canned(403, body="x" * (2049 - len(marker)) + marker)) is False


# -- how long a hint says to wait ------------------------------------------------------------------
def test_hint_precedence(canned: Canned) -> None:
    both = {"Retry-After": "7", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)}
    assert hint_seconds(canned(429, both), NOW) == 7.0  # Retry-After wins
    both["Retry-After"] = "whenever"
    assert hint_seconds(canned(429, both), NOW) == 30.0  # unreadable: the reset time is next
    reset_only = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)}
    assert hint_seconds(canned(403, reset_only), NOW) == 30.0
    assert hint_seconds(canned(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 5)}),
                        NOW) == 0.0
    assert hint_seconds(canned(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "soon"}), NOW) is None
    assert hint_seconds(canned(403, {"x-ratelimit-remaining": "3", "x-ratelimit-reset": str(int(NOW) + 30)}),
                        NOW) is None
    assert hint_seconds(canned(503), NOW) is None


def test_secondary_limits_wait_a_minute_doubling_per_strike(canned: Canned) -> None:
    assert SECONDARY_MIN_WAIT == 60.0
    assert hint_seconds(canned(403, body=SECONDARY_BODY), NOW) == 60.0
    assert hint_seconds(canned(429, body=SECONDARY_BODY), NOW) == 60.0
    assert hint_seconds(canned(403, body=SECONDARY_BODY), NOW, secondary_strikes=1) == 120.0
    assert hint_seconds(canned(403, body=SECONDARY_BODY), NOW, secondary_strikes=6) == 3840.0
    assert hint_seconds(canned(403, body=SECONDARY_BODY), NOW, secondary_strikes=9) == 3840.0  # capped
    assert hint_seconds(canned(503, body=SECONDARY_BODY), NOW) is None  # only a 403 or 429 is a rate limit


# -- the not-before gate ---------------------------------------------------------------------------
def test_gate_holds_never_shorten() -> None:
    clock = FakeClock(start=0.0)
    gate = RateGate(clock)
    assert gate.wait_for("o") == 0.0
    assert gate.arm("o", 0.5) == 0.5
    assert gate.arm("o", 10) == 10.0
    assert gate.arm("o", 3) == 10.0  # a shorter hint does not shorten the hold
    assert gate.wait_for("o") == 10.0 and gate.wait_for("other") == 0.0
    clock.advance(4)
    assert gate.wait_for("o") == 6.0
    clock.advance(7)
    assert gate.wait_for("o") == 0.0



def test_gate_tells_its_listeners_of_every_new_or_longer_hold_and_survives_a_broken_one(
        caplog: pytest.LogCaptureFixture) -> None:
    """The client's state file saves on these calls: a hold it is not told of is lost at exit."""
    gate = RateGate(FakeClock(start=0.0))
    heard: list[tuple[str, float]] = []

    def broken(origin: str, seconds: float) -> None:
        raise RuntimeError("listener bug")

    gate.add_listener(broken)
    gate.add_listener(lambda origin, seconds: heard.append((origin, seconds)))
    assert gate.arm("o", 10) == 10.0  # the broken listener neither stops the arm nor the next listener
    assert gate.arm("o", 3) == 10.0  # a shorter hint changes nothing, so nobody is told
    assert gate.arm("o", 20) == 20.0
    assert gate.arm("p", 1) == 1.0
    assert heard == [("o", 10), ("o", 20), ("p", 1)]
    assert [r.getMessage().startswith("rate gate listener") for r in caplog.records].count(True) == 3

def test_gate_strikes_count_until_cleared() -> None:
    gate = RateGate(FakeClock())
    assert [gate.strike("o"), gate.strike("o"), gate.strike("p"), gate.strike("o")] == [0, 1, 0, 2]
    gate.clear_strikes("o")
    assert gate.strike("o") == 0 and gate.strike("p") == 1


def test_gate_snapshot_holds_only_future_wall_instants() -> None:
    clock = FakeClock()
    gate = RateGate(clock)
    gate.arm("a", 10)
    gate.arm("b", 20)
    assert gate.snapshot() == {"a": clock.wall() + 10, "b": clock.wall() + 20}
    clock.advance(10)  # a's hold ends exactly now
    assert gate.snapshot() == {"b": clock.wall() + 10}


def test_gate_restore_skips_broken_and_past_entries_and_caps_the_rest() -> None:
    clock = FakeClock()
    gate = RateGate(clock)
    now = clock.wall()
    gate.restore({"broken": "soon", "past": now - 5, "ending": now, "short": now + 0.5, "long": now + 9999,
                  "later": now + 30}, cap=100)
    assert gate.wait_for("broken") == 0.0 and gate.wait_for("past") == 0.0 and gate.wait_for("ending") == 0.0
    assert gate.wait_for("short") == 0.5 and gate.wait_for("long") == 100.0 and gate.wait_for("later") == 30.0


# -- the retry budget ------------------------------------------------------------------------------
def test_budget_spends_and_refuses_when_empty() -> None:
    clock = FakeClock()
    budget = RetryBudget(3, clock)
    assert budget.level("o") == 3.0
    assert budget.spend("o") is True and budget.level("o") == 2.0
    assert budget.spend("o", cost=2.0) is True and budget.level("o") == 0.0
    assert budget.spend("o") is False and budget.level("o") == 0.0
    assert budget.spend("o") is False  # refusing again does not break the bucket
    assert budget.level("other") == 3.0


def test_budget_admits_a_retry_costing_exactly_what_is_left() -> None:
    budget = RetryBudget(1, FakeClock())
    assert budget.spend("o") is True and budget.spend("o") is False


def test_budget_trickles_back_one_token_every_30_seconds_up_to_capacity() -> None:
    clock = FakeClock()
    budget = RetryBudget(2, clock)
    budget.spend("o", cost=2.0)
    clock.advance(15)
    assert budget.level("o") == 0.5
    clock.advance(15)
    assert budget.level("o") == 1.0 and budget.spend("o") is True
    clock.advance(3000)
    assert budget.level("o") == 2.0


def test_budget_earns_a_fifth_per_first_try_success_up_to_capacity() -> None:
    clock = FakeClock()
    budget = RetryBudget(1, clock)
    budget.spend("o")
    budget.earn("o")
    assert budget.level("o") == pytest.approx(0.2)
    for _ in range(10):
        budget.earn("o")
    assert budget.level("o") == 1.0


def test_a_zero_budget_never_refuses_and_keeps_no_state() -> None:
    budget = RetryBudget(0, FakeClock())
    assert all(budget.spend("o") is True for _ in range(5))
    budget.earn("o")
    assert budget.level("o") == 0 and budget.snapshot() == {}


def test_budget_snapshot_and_restore() -> None:
    clock = FakeClock()
    budget = RetryBudget(10, clock)
    budget.spend("o", cost=10)
    clock.advance(10)
    assert budget.snapshot() == {"o": 0.333}
    other = RetryBudget(10, FakeClock())
    other.restore({"bad": "x", "a": 4.5, "neg": -3, "big": 50})
    assert (other.level("bad"), other.level("a"), other.level("neg"), other.level("big")) == (10.0, 4.5, 0.0, 10.0)


# -- over the wire: what the fake sees -------------------------------------------------------------
def _client(fake: FakeActionsService, clock: FakeClock, budget: float) -> sc.Client:
    return make_client(fake, clock, resilience=sc.ResilienceConfig(
        retry=sc.RetryConfig(max_attempts=5, budget=budget),
        circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=100, minimum_calls=20)))


def test_an_empty_budget_stops_retries_but_not_first_attempts(fake: FakeActionsService, clock: FakeClock) -> None:
    client = _client(fake, clock, budget=2)
    client.get_runner_by_name("warm")
    fake.inject_always("get_runner", Fault.respond(503))
    with pytest.raises(sc.RetryExhaustedError, match="retry budget"):
        client.get_runner(1)
    assert fake.count("get_runner") == 3  # the first attempt and the two retries the budget paid for
    with pytest.raises(sc.APIError) as info:
        client.get_runner(1)
    assert not isinstance(info.value, sc.RetryExhaustedError) and fake.count("get_runner") == 4
    clock.advance(30)  # one token trickles back
    with pytest.raises(sc.RetryExhaustedError):
        client.get_runner(1)
    assert fake.count("get_runner") == 6
    client.close()


def test_a_spent_budget_carries_over_to_the_next_process(fake: FakeActionsService, clock: FakeClock) -> None:
    first = _client(fake, clock, budget=2)
    first.get_runner_by_name("warm")
    fake.inject_always("get_runner", Fault.respond(503))
    with pytest.raises(sc.RetryExhaustedError):
        first.get_runner(1)
    saved = first.export_resilience_state()
    first.close()
    second = _client(fake, clock, budget=2)
    second.import_resilience_state(saved)
    fake.clear_log()
    with pytest.raises(sc.APIError):
        second.get_runner(1)
    assert fake.count("get_runner") == 1  # no retry: the last process spent the budget
    second.close()


def test_a_rate_limit_hold_carries_over_to_the_next_process(fake: FakeActionsService, clock: FakeClock) -> None:
    first = make_client(fake, clock)
    first.get_runner_by_name("warm")
    fake.inject("get_runner_by_name", Fault.respond(429, headers={"Retry-After": "3600"}))
    with pytest.raises(sc.RateLimitedError):
        first.get_runner_by_name("x")
    saved = first.export_resilience_state()
    first.close()
    second = make_client(fake, clock)
    second.import_resilience_state(saved)
    fake.clear_log()
    with pytest.raises(sc.RateLimitedError) as info:
        second.get_runner_by_name("x")
    assert fake.count("get_runner_by_name") == 0
    assert info.value.retry_at is not None and info.value.retry_at >= clock.wall() + 3600
    second.close()


def test_repeated_secondary_limits_wait_longer_and_a_success_forgives_them(fake: FakeActionsService,
                                                                          clock: FakeClock) -> None:
    client = make_client(fake, clock)
    client.get_runner_by_name("warm")
    secondary = Fault.respond(403, json_body={"message": SECONDARY_BODY})
    for _ in range(2):
        fake.inject("get_runner_by_name", secondary)
        assert client.get_runner_by_name("x") is None
        assert 60 <= clock.sleeps[-1] < 61  # each time a first strike: the success cleared the last one
    fake.inject("get_runner_by_name", secondary, secondary)
    with pytest.raises(sc.RateLimitedError) as info:
        client.get_runner_by_name("x")  # the second strike in a row asks for 120 s, more than max_hint_wait
    assert info.value.retry_at is not None and 120 <= info.value.retry_at - clock.wall() < 121
    client.close()


# -- whose clock an absolute hint is read on -------------------------------------------------------
def _answer(status: int, headers: dict[str, str]) -> requests.Response:
    """A response built by hand, so its Date header is exactly what the test says (or absent)."""
    import io

    from requests.structures import CaseInsensitiveDict

    response = requests.Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict(headers)
    response.raw = io.BytesIO(b"")
    return response


SLOW = NOW - 3600.0  # this machine's wall clock, an hour behind GitHub's


@pytest.mark.parametrize("hint", [
    {"Retry-After": email.utils.formatdate(NOW + 30, usegmt=True)},
    {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)},
], ids=["retry-after-date", "ratelimit-reset"])
def test_absolute_hints_are_read_on_githubs_clock_not_this_machines(hint: dict[str, str]) -> None:
    dated = _answer(429, {**hint, "Date": email.utils.formatdate(NOW, usegmt=True)})
    assert hint_seconds(dated, SLOW) == 30.0  # the answer's own Date says when "now" is for GitHub
    undated = _answer(429, hint)
    assert hint_seconds(undated, SLOW, server_time=NOW) == 30.0  # else the client's estimate of it
    assert hint_seconds(undated, NOW) == 30.0  # else this machine's clock
    garbled = _answer(429, {**hint, "Date": "yesterday-ish"})
    assert hint_seconds(garbled, SLOW, server_time=NOW) == 30.0  # an unreadable Date is no Date
    naive = _answer(429, {**hint, "Date": "Fri, 15 Jan 2027 08:00:00 -0000"})  # no zone: not trusted
    assert hint_seconds(naive, SLOW, server_time=NOW) == 30.0
