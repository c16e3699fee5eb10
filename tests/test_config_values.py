"""The settings and internal records moved off ``@dataclass`` onto value classes (issue 28): they
behave as the frozen dataclasses they were, and importing them no longer loads ``dataclasses``.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import pickle
import subprocess
import sys
from typing import Any

import pytest

import scaleset_client as sc
from scaleset_client._adapter import _Progress
from scaleset_client._arc_metrics import ArcFamily, ScaleSetLabels
from scaleset_client._auth import AdminToken, GitHubCredentials
from scaleset_client._breaker import Permit
from scaleset_client._classify import Action, Attempt, Decision
from scaleset_client._cli_options import OPTIONS, Option
from scaleset_client._connections import Interrupt
from scaleset_client._exec_scaler import _jsonable
from scaleset_client._policy import CallPolicy
from scaleset_client._secrets import Secret
from scaleset_client._urls import parse_config_url
from scaleset_client._value_class import ValueClass, field_values, set_fields, value_field

PUBLIC = [sc.CircuitBreakerConfig(), sc.RetryConfig(), sc.ResilienceConfig(),
          sc.ListenerConfig(scale_set_id=1, max_runners=3), sc.ListenerHealth(True, False, "starting"),
          sc.EventRef(7, "job_started", 0), sc.ComponentHealth("broker", "ok"), sc.RecoveryReport(("renewed",)),
          sc.HealthReport(True, "ok", "", {}, 1.0), sc.ClientCertificate("/etc/cert.pem"),
          sc.Transition("https://x", "admin", sc.State.CLOSED, sc.State.OPEN, "5 failures", 1.0)]


@pytest.mark.parametrize("value", PUBLIC, ids=lambda v: type(v).__name__)
def test_public_values_behave_as_frozen_dataclasses(value: Any) -> None:
    cls = type(value)
    names = [f.name for f in dataclasses.fields(cls)]
    assert names and list(cls.__match_args__) == names
    assert dataclasses.is_dataclass(cls) and list(dataclasses.asdict(value)) == names
    assert dataclasses.replace(value) == value
    if not any(isinstance(v, dict) for v in dataclasses.astuple(value)):
        assert hash(dataclasses.replace(value)) == hash(value)
    else:  # a dict field: unhashable, as the frozen dataclass was
        with pytest.raises(TypeError, match="unhashable"):
            hash(value)
    assert list(inspect.signature(cls).parameters) == names
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, names[0], None)
    assert not hasattr(value, "__dict__")
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(value, proto)) == value
    assert copy.deepcopy(value) == value and copy.copy(value) == value
    assert repr(value).startswith(f"{cls.__qualname__}({names[0]}=")
    assert cls.__module__ == "scaleset_client"


def test_the_settings_keep_their_defaults_validation_and_replace() -> None:
    resilience = sc.ResilienceConfig()
    assert resilience.circuit_breaker == sc.CircuitBreakerConfig() and resilience.retry.budget == 10.0
    assert resilience.circuit_breaker is not sc.ResilienceConfig().circuit_breaker  # a factory, as before
    gentler = dataclasses.replace(resilience, retry=dataclasses.replace(resilience.retry, budget=5.0))
    assert gentler.retry.budget == 5.0 and gentler != resilience
    with pytest.raises(sc.ConfigError, match="max_attempts"):
        sc.RetryConfig(max_attempts=0)
    with pytest.raises(sc.ConfigError, match="minimum_calls"):
        dataclasses.replace(sc.CircuitBreakerConfig(), window_size=5)  # __post_init__ runs on replace too
    with pytest.raises(sc.ConfigError, match="retry must be"):
        sc.ResilienceConfig(retry=None)  # type: ignore[arg-type]
    with pytest.raises(sc.ConfigError, match="max_runners"):
        sc.ListenerConfig(1, -1)
    with pytest.raises(TypeError):
        sc.ListenerConfig(1)  # type: ignore[call-arg]
    fields = {f.name: f for f in dataclasses.fields(sc.ResilienceConfig)}
    assert fields["retry"].default_factory is sc.RetryConfig and fields["max_message_bytes"].default == 64 << 20


def test_a_field_declared_compare_false_is_left_out_of_equality_and_hash() -> None:
    def on_poison(message_id: int, error: BaseException) -> None:
        """Does nothing."""

    plain, hooked = sc.ListenerConfig(1, 2), sc.ListenerConfig(1, 2, on_poison=on_poison)
    assert plain == hooked and hash(plain) == hash(hooked) and hooked.on_poison is on_poison
    assert plain != sc.ListenerConfig(1, 3)
    assert not {f.name: f for f in dataclasses.fields(sc.ListenerConfig)}["on_poison"].compare

    def signer(message: bytes) -> bytes:
        return b"s" * 256

    app = sc.GitHubAppAuth("Iv1.abc", 7, signer=signer)
    assert app == sc.GitHubAppAuth("Iv1.abc", 7, signer=lambda m: b"") and "signer" not in repr(app)
    assert hash(app) == hash(sc.GitHubAppAuth("Iv1.abc", 7, signer=signer))
    with pytest.raises(sc.ConfigError, match="not both"):
        sc.GitHubAppAuth("Iv1.abc", 7, private_key="k", signer=signer)


def test_secrets_stay_out_of_repr() -> None:
    credentials = GitHubCredentials(pat=Secret("ghp_not-a-real-token-42"))
    assert "ghp_not" not in repr(credentials) and repr(credentials).startswith("GitHubCredentials(app=None")
    certificate = sc.ClientCertificate(b"cert", b"-----BEGIN PRIVATE KEY-----x", "pw-quietly")
    assert "BEGIN" not in repr(certificate) and "pw-quietly" not in repr(certificate)


def test_the_internal_records_keep_their_shape() -> None:
    policy = CallPolicy("get", "admin", True)
    assert dataclasses.replace(policy, read_timeout=60.0).read_timeout == 60.0 and policy.json_body
    assert policy == CallPolicy(operation="get", operation_class="admin", idempotent=True, json_body=True)
    decision = Decision(Action.RETURN, sc.State.CLOSED, status=200)  # type: ignore[arg-type]
    assert (decision.reason, decision.hint, decision.cost, decision.status) == ("", None, 1.0, 200)
    attempt = Attempt("GET", "https://x/y", False, False, Interrupt.NONE, (False, False), 1.0, None, 0)
    assert attempt.capped == (False, False) and "url='https://x/y'" in repr(attempt)
    assert Permit(3) == Permit(3, 0) != Permit(3, 1)
    assert AdminToken("https://s/", Secret("t-abcdefgh"), 1.0, 2).generation == 2
    assert parse_config_url("https://github.com/org").api_base == "https://api.github.com"
    assert ScaleSetLabels(name="n").values() == ("", "", "", "n", "")
    assert ArcFamily("a", "gauge", (), "h") == ArcFamily("a", "gauge", (), "h")
    assert all(isinstance(o, Option) for o in OPTIONS) and OPTIONS[0].dest == "url"
    progress = _Progress()
    progress.number += 1
    assert (progress.number, progress.last_error) == (1, None) and not hasattr(progress, "__dict__")


def test_exec_events_are_the_jobs_fields_as_json() -> None:
    job = sc.JobStarted(runner_request_id=7, request_labels=["x"], runner_id=3, runner_name="r3")
    assert _jsonable(job) == {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                              for k, v in dataclasses.asdict(job).items()}

    @dataclasses.dataclass
    class Other:
        labels: list[str]

    assert _jsonable(Other(["a"])) == {"labels": ["a"]}  # a dataclass of the caller's still works


def test_a_hand_written_init_must_match_the_declared_fields() -> None:
    class Good(ValueClass):
        __slots__ = ()
        a: int
        b: list[int] = value_field(default_factory=list)
        c: str = "c"

        def __init__(self, a: int, b: list[int] | None = None, c: str = "c") -> None:
            set_fields(self, (a, [] if b is None else b, c))

    assert Good(1) == Good(1, [], "c") and field_values(Good(1)) == {"a": 1, "b": [], "c": "c"}
    with pytest.raises(TypeError, match="declared fields"):
        class Order(ValueClass):
            __slots__ = ()
            a: int
            b: int

            def __init__(self, b: int, a: int) -> None:
                set_fields(self, (a, b))
    with pytest.raises(TypeError, match="must default to 0"):
        class Default(ValueClass):
            __slots__ = ()
            a: int = 0

            def __init__(self, a: int = 1) -> None:
                set_fields(self, (a,))
    with pytest.raises(TypeError, match="has none"):
        class Required(ValueClass):
            __slots__ = ()
            a: int

            def __init__(self, a: int = 1) -> None:
                set_fields(self, (a,))


SEEN: list[int] = []


class Checked(ValueClass):
    """Records every ``__post_init__``."""

    __slots__ = ()
    a: int
    b: int = 2

    def __post_init__(self) -> None:
        SEEN.append(self.a + self.b)


def test_a_written_out_init_cannot_come_with_post_init() -> None:
    """A written-out ``__init__`` sets the fields itself, so a ``__post_init__`` would never run:
    the class is refused when it is made, not left to skip its validation."""
    with pytest.raises(TypeError, match="__post_init__"):
        class Both(ValueClass):
            __slots__ = ()
            a: int

            def __init__(self, a: int) -> None:
                set_fields(self, (a,))

            def __post_init__(self) -> None:
                raise AssertionError("never reached")


def test_post_init_runs_after_the_fields_are_set_and_not_on_unpickling() -> None:
    SEEN.clear()
    value = Checked(1)
    assert Checked(1, 5).b == 5 and Checked(a=1, b=3).b == 3 and SEEN == [3, 6, 4]
    assert pickle.loads(pickle.dumps(value)) == value and SEEN == [3, 6, 4]


def test_importing_the_settings_and_the_transport_loads_no_dataclasses() -> None:
    modules = ["_config", "_breaker", "_policy", "_classify", "_adapter", "_auth", "_urls", "_tls",
               "_listener_config", "_arc_metrics", "_exec_scaler", "_cli_options", "_value_class"]
    code = ("import sys\n"
            + "".join(f"import scaleset_client.{m}\n" for m in modules)
            + "from scaleset_client import _auth, _config, _listener_config\n"
            "_config.ResilienceConfig(); _listener_config.ListenerConfig(1, 2)\n"
            "_auth.GitHubAppAuth(1, 2, signer=lambda m: m)\n"
            "print(sorted({'dataclasses', 'inspect', 'ast', 'dis', 'subprocess', 'shlex'} & set(sys.modules)))\n")
    # without coverage in the child: its start-up hook (a .pth) imports ``dataclasses`` itself
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         env=env)
    assert out.stdout.strip() == "[]"
