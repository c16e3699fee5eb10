"""A pytest plugin: ``scaleset_fake`` (a ``FakeActionsService`` in strict mode) and
``scaleset_fake_client`` (a ``Client`` wired to it) for your own scaler's tests.

Installed with the package as a ``pytest11`` entry point, so the fixtures are available in any
project that has ``scaleset-client`` installed; or list it yourself in a ``conftest.py``::

    pytest_plugins = ["scaleset_client.testing.pytest_plugin"]
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._client import Client
from .fake_service import FakeActionsService

__all__ = ["scaleset_fake", "scaleset_fake_client"]


@pytest.fixture
def scaleset_fake() -> Iterator[FakeActionsService]:
    """A fake service on loopback in strict mode: a request the real service would refuse fails the test."""
    with FakeActionsService(long_poll_hold=0.1, strict=True) as fake:
        yield fake


@pytest.fixture
def scaleset_fake_client(scaleset_fake: FakeActionsService) -> Iterator[Client]:
    """A ``Client`` for ``scaleset_fake``, closed after the test."""
    client = Client(scaleset_fake.config_url, token=scaleset_fake.token, long_poll_timeout=5.0)
    yield client
    client.close()
