"""scaleset_client: a resilient, synchronous client for the GitHub Actions Runner Scale Set APIs.

    import scaleset_client as sc

    with sc.Client("https://github.com/my-org", token=PAT) as client:
        scale_set = client.get_runner_scale_set(1, "linux-x64")

Everything public is importable from here; ``scaleset_client.testing`` holds the fake service
and the fake clock for offline tests.
"""

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # the real imports, for type checkers; at run time each module loads on first use
    from .auth import GitHubAppAuth
    from .breaker import BreakerRegistry, State, Transition
    from .client import Client
    from .clock import Clock, SystemClock
    from .config import CircuitBreakerConfig, ResilienceConfig, RetryConfig
    from .deadline import Deadline
    from .errors import (
        APIError,
        AuthenticationError,
        CallCancelledError,
        CircuitOpenError,
        ConfigError,
        DeadlineExceededError,
        JobStillRunningError,
        MessageQueueTokenExpiredError,
        RateLimitedError,
        RecoveryError,
        ResponseError,
        RetryExhaustedError,
        RunnerExistsError,
        RunnerGroupNotFoundError,
        RunnerNotFoundError,
        RunSkippedError,
        ScalesetError,
        ScaleSetExistsError,
        ScaleSetNotFoundError,
        ServerError,
        SessionConflictError,
        SessionNotFoundError,
        StateFileError,
        StateFileLockedError,
        TransientError,
        TransportError,
    )
    from .health import ComponentHealth, HealthReport, RecoveryReport
    from .listener import (
        EventRef,
        Listener,
        ListenerConfig,
        ListenerHealth,
        MetricsRecorder,
        Scaler,
    )
    from .models import (
        JitRunnerConfig,
        JitRunnerSetting,
        JobAssigned,
        JobAvailable,
        JobCompleted,
        JobMessage,
        JobStarted,
        Label,
        RunnerGroup,
        RunnerReference,
        RunnerScaleSet,
        RunnerScaleSetMessage,
        RunnerScaleSetSession,
        RunnerScaleSetStatistic,
        RunnerSetting,
        SystemInfo,
    )
    from .secrets import Secret
    from .session import MessageSession

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public name -> private module (PEP 562): ``import scaleset_client`` stays cheap for cron jobs and
# CLI start-up, and ``sc.Client`` or ``from scaleset_client import Client`` loads what it needs.
_LAZY: dict[str, str] = {
    "GitHubAppAuth": "auth",
    "BreakerRegistry": "breaker",
    "State": "breaker",
    "Transition": "breaker",
    "Client": "client",
    "Clock": "clock",
    "SystemClock": "clock",
    "CircuitBreakerConfig": "config",
    "ResilienceConfig": "config",
    "RetryConfig": "config",
    "APIError": "errors",
    "AuthenticationError": "errors",
    "CircuitOpenError": "errors",
    "ConfigError": "errors",
    "JobStillRunningError": "errors",
    "MessageQueueTokenExpiredError": "errors",
    "RateLimitedError": "errors",
    "RecoveryError": "errors",
    "ResponseError": "errors",
    "RetryExhaustedError": "errors",
    "RunnerExistsError": "errors",
    "RunnerNotFoundError": "errors",
    "ScalesetError": "errors",
    "ScaleSetNotFoundError": "errors",
    "SessionConflictError": "errors",
    "SessionNotFoundError": "errors",
    "RunSkippedError": "errors",
    "ServerError": "errors",
    "StateFileError": "errors",
    "TransientError": "errors",
    "TransportError": "errors",
    "ComponentHealth": "health",
    "HealthReport": "health",
    "Listener": "listener",
    "ListenerConfig": "listener",
    "ListenerHealth": "listener",
    "MetricsRecorder": "listener",
    "Scaler": "listener",
    "JitRunnerConfig": "models",
    "JitRunnerSetting": "models",
    "JobAssigned": "models",
    "JobAvailable": "models",
    "JobCompleted": "models",
    "JobMessage": "models",
    "JobStarted": "models",
    "Label": "models",
    "RunnerGroup": "models",
    "RunnerReference": "models",
    "RunnerScaleSet": "models",
    "RunnerScaleSetMessage": "models",
    "RunnerScaleSetSession": "models",
    "RunnerScaleSetStatistic": "models",
    "RunnerSetting": "models",
    "SystemInfo": "models",
    "Secret": "secrets",
    "MessageSession": "session",
    "CallCancelledError": "errors",
    "DeadlineExceededError": "errors",
    "StateFileLockedError": "errors",
    "RunnerGroupNotFoundError": "errors",
    "ScaleSetExistsError": "errors",
    "Deadline": "deadline",
    "RecoveryReport": "health",
    "EventRef": "listener",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "APIError",
    "AuthenticationError",
    "BreakerRegistry",
    "CallCancelledError",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "Client",
    "Clock",
    "ComponentHealth",
    "ConfigError",
    "Deadline",
    "DeadlineExceededError",
    "EventRef",
    "GitHubAppAuth",
    "HealthReport",
    "JitRunnerConfig",
    "JitRunnerSetting",
    "JobAssigned",
    "JobAvailable",
    "JobCompleted",
    "JobMessage",
    "JobStarted",
    "JobStillRunningError",
    "Label",
    "Listener",
    "ListenerConfig",
    "ListenerHealth",
    "MessageQueueTokenExpiredError",
    "MessageSession",
    "MetricsRecorder",
    "RateLimitedError",
    "RecoveryError",
    "RecoveryReport",
    "ResilienceConfig",
    "ResponseError",
    "RetryConfig",
    "RetryExhaustedError",
    "RunSkippedError",
    "RunnerExistsError",
    "RunnerGroup",
    "RunnerGroupNotFoundError",
    "RunnerNotFoundError",
    "RunnerReference",
    "RunnerScaleSet",
    "RunnerScaleSetMessage",
    "RunnerScaleSetSession",
    "RunnerScaleSetStatistic",
    "RunnerSetting",
    "ScaleSetExistsError",
    "ScaleSetNotFoundError",
    "Scaler",
    "ScalesetError",
    "Secret",
    "ServerError",
    "SessionConflictError",
    "SessionNotFoundError",
    "State",
    "StateFileError",
    "StateFileLockedError",
    "SystemClock",
    "SystemInfo",
    "TransientError",
    "Transition",
    "TransportError",
    "__version__",
]
