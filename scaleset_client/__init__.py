"""scaleset_client: a resilient, synchronous client for the GitHub Actions Runner Scale Set APIs.

    import scaleset_client as sc

    with sc.Client("https://github.com/my-org", token=PAT) as client:
        scale_set = client.get_runner_scale_set(1, "linux-x64")

Everything public is importable from here; ``scaleset_client.testing`` holds the fake service
and the fake clock for offline tests.
"""

import logging

from ._version import __version__
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
    RunnerNotFoundError,
    ScalesetError,
    ScaleSetNotFoundError,
    SessionConflictError,
    SessionNotFoundError,
    StateFileError,
    StateFileLockedError,
    TransportError,
)
from .health import ComponentHealth, HealthReport, RecoveryReport
from .listener import Listener, ListenerConfig, ListenerHealth, MetricsRecorder, RunSkippedError, Scaler
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
    "RunnerNotFoundError",
    "RunnerReference",
    "RunnerScaleSet",
    "RunnerScaleSetMessage",
    "RunnerScaleSetSession",
    "RunnerScaleSetStatistic",
    "RunnerSetting",
    "ScaleSetNotFoundError",
    "Scaler",
    "ScalesetError",
    "Secret",
    "SessionConflictError",
    "SessionNotFoundError",
    "State",
    "StateFileError",
    "StateFileLockedError",
    "SystemClock",
    "SystemInfo",
    "Transition",
    "TransportError",
    "__version__",
]
