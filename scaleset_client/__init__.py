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
    from ._auth import AppSigner, GitHubAppAuth
    from ._breaker import BreakerRegistry, State, Transition
    from ._client import Client
    from ._clock import Clock, SystemClock
    from ._config import CircuitBreakerConfig, ResilienceConfig, RetryConfig
    from ._deadline import Deadline
    from ._errors import (
        APIError,
        AuthenticationError,
        CallCancelledError,
        CircuitOpenError,
        ConfigError,
        CredentialSourceError,
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
        TokenUnavailableError,
        TransientError,
        TransportError,
    )
    from ._health import ComponentHealth, HealthReport, RecoveryReport
    from ._listener import (
        EventRef,
        Listener,
        ListenerConfig,
        ListenerHealth,
        MetricsRecorder,
        Scaler,
    )
    from ._messages import (
        JobAssigned,
        JobAvailable,
        JobCompleted,
        JobMessage,
        JobStarted,
        RunnerScaleSetMessage,
    )
    from ._models import (
        JitRunnerConfig,
        JitRunnerSetting,
        Label,
        RunnerGroup,
        RunnerReference,
        RunnerScaleSet,
        RunnerScaleSetSession,
        RunnerScaleSetStatistic,
        RunnerSetting,
        SystemInfo,
    )
    from ._secrets import Secret
    from ._session import MessageSession
    from ._tls import ClientCertificate

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public name -> private module (PEP 562): ``import scaleset_client`` stays cheap for cron jobs and
# CLI start-up, and ``sc.Client`` or ``from scaleset_client import Client`` loads what it needs.
_LAZY: dict[str, str] = {
    "GitHubAppAuth": "_auth",
    "BreakerRegistry": "_breaker",
    "State": "_breaker",
    "Transition": "_breaker",
    "Client": "_client",
    "Clock": "_clock",
    "SystemClock": "_clock",
    "CircuitBreakerConfig": "_config",
    "ResilienceConfig": "_config",
    "RetryConfig": "_config",
    "APIError": "_errors",
    "AuthenticationError": "_errors",
    "CircuitOpenError": "_errors",
    "ConfigError": "_errors",
    "JobStillRunningError": "_errors",
    "MessageQueueTokenExpiredError": "_errors",
    "RateLimitedError": "_errors",
    "RecoveryError": "_errors",
    "ResponseError": "_errors",
    "RetryExhaustedError": "_errors",
    "RunnerExistsError": "_errors",
    "RunnerNotFoundError": "_errors",
    "ScalesetError": "_errors",
    "ScaleSetNotFoundError": "_errors",
    "SessionConflictError": "_errors",
    "SessionNotFoundError": "_errors",
    "RunSkippedError": "_errors",
    "ServerError": "_errors",
    "StateFileError": "_errors",
    "TransientError": "_errors",
    "TransportError": "_errors",
    "ComponentHealth": "_health",
    "HealthReport": "_health",
    "Listener": "_listener",
    "ListenerConfig": "_listener",
    "ListenerHealth": "_listener",
    "MetricsRecorder": "_listener",
    "Scaler": "_listener",
    "JitRunnerConfig": "_models",
    "JitRunnerSetting": "_models",
    "JobAssigned": "_messages",
    "JobAvailable": "_messages",
    "JobCompleted": "_messages",
    "JobMessage": "_messages",
    "JobStarted": "_messages",
    "Label": "_models",
    "RunnerGroup": "_models",
    "RunnerReference": "_models",
    "RunnerScaleSet": "_models",
    "RunnerScaleSetMessage": "_messages",
    "RunnerScaleSetSession": "_models",
    "RunnerScaleSetStatistic": "_models",
    "RunnerSetting": "_models",
    "SystemInfo": "_models",
    "Secret": "_secrets",
    "MessageSession": "_session",
    "CallCancelledError": "_errors",
    "DeadlineExceededError": "_errors",
    "StateFileLockedError": "_errors",
    "RunnerGroupNotFoundError": "_errors",
    "ScaleSetExistsError": "_errors",
    "Deadline": "_deadline",
    "RecoveryReport": "_health",
    "EventRef": "_listener",
    "AppSigner": "_auth",
    "CredentialSourceError": "_errors",
    "TokenUnavailableError": "_errors",
    "ClientCertificate": "_tls",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    if isinstance(value, type) and value.__module__.startswith(f"{__name__}._"):
        # The implementation modules are private: a public class answers to its public name
        # (reprs, docs, pickles: ``scaleset_client.Client``), as httpx's names do.
        value.__module__ = __name__
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "APIError",
    "AppSigner",
    "AuthenticationError",
    "BreakerRegistry",
    "CallCancelledError",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "Client",
    "ClientCertificate",
    "Clock",
    "ComponentHealth",
    "ConfigError",
    "CredentialSourceError",
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
    "TokenUnavailableError",
    "TransientError",
    "Transition",
    "TransportError",
    "__version__",
]
