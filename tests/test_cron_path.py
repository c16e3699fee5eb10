"""What a cron run skips (issue 28) changes nothing it does: the proxies found for an origin are
those requests finds, with or without proxy variables in the environment; the CLI puts back the
signal handlers it replaced; the ``--config`` reader still answers to its names on ``_cli``."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import requests

import scaleset_client as sc
from scaleset_client import _calls, _cli, _cli_config

_URLS = ("https://api.github.com/orgs/x", "https://pipelines.actions.githubusercontent.com/abc/",
         "http://127.0.0.1:8080/fake-org", "https://broker.actions.githubusercontent.com/message")


@pytest.mark.parametrize("environment", [
    {},
    {"HTTPS_PROXY": "http://proxy.example:3128"},
    {"https_proxy": "http://proxy.example:3128", "NO_PROXY": "127.0.0.1,.githubusercontent.com"},
    {"Http_Proxy": "http://mixed.example:1"},
    {"HTTP_PROXY": ""},
    {"ALL_PROXY": "socks5://proxy.example:1080", "no_proxy": "api.github.com"},
], ids=["none", "https", "https-no-proxy", "mixed-case", "empty", "all-no-proxy"])
@pytest.mark.parametrize("given", [None, {"http": "http://given.example:8080"}], ids=["env-only", "given"])
def test_proxies_for_an_origin_are_what_requests_resolves(monkeypatch: pytest.MonkeyPatch,
                                                          environment: dict[str, str],
                                                          given: dict[str, str] | None) -> None:
    for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with sc.Client("https://github.com/x", token="ghp_" + "a" * 36, proxies=given) as client:
        calls: _calls.Calls = client._calls
        for url in _URLS:
            expected = requests.utils.resolve_proxies(_calls.prepared_for(url), dict(given or {}), True)
            assert calls.proxies_for(url) == expected, url


def test_the_cli_puts_back_the_signal_handlers_it_set(tmp_path: os.PathLike[str]) -> None:
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    missing = os.path.join(tmp_path, "missing-token")  # refused once the handlers are in: exit 2
    root = logging.getLogger()
    level = root.level
    try:
        assert _cli.main(["--url", "https://github.com/x", "--token-file", missing, "--log-level", "ERROR"]) == 2
    finally:
        root.setLevel(level)  # main() sets the root logger's level; later tests read their logs through it
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_the_config_reader_answers_on_the_cli_module() -> None:
    assert _cli.FILE_KEYS is _cli_config.FILE_KEYS and _cli.load_config is _cli_config.load_config
    with pytest.raises(AttributeError, match="no_such_name"):
        _cli.no_such_name  # noqa: B018


def test_tls_context_is_built_by_the_first_https_connection_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from scaleset_client import _tls
    from scaleset_client.testing import FakeActionsService

    built: list[object] = []
    real = _tls.partial_chain_context
    def counted() -> object:
        built.append(1)
        return real()

    monkeypatch.setattr(_tls, "partial_chain_context", counted)
    with FakeActionsService(long_poll_hold=0.05) as fake, sc.Client(fake.config_url, token=fake.token) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="plain"))
        assert client.get_runner_scale_set_by_id(scale_set.id) is not None
    assert built == []  # plain HTTP all the way: no TLS context (the HTTPS path: tests/test_tls_chain.py)
