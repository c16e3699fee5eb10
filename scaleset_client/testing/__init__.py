"""Test kit: a fake of the whole service on loopback, its faults, and a fake clock.

    from scaleset_client.testing import FakeActionsService, FakeClock, Fault

It is public so that users can test their scalers offline, with the same faults our own
tests use.
"""

from ._clock import FakeClock
from ._faults import Fault
from ._jobs_side import FigureSent
from ._proxy import ForwardProxy
from ._servers import require_client_certificate
from ._shapes import ShapeFront
from .fake_service import FakeActionsService, LoggedRequest

__all__ = ["FakeActionsService", "FakeClock", "Fault", "FigureSent", "ForwardProxy", "LoggedRequest", "ShapeFront",
           "require_client_certificate"]
