from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client._urls import join_url, parse_config_url

VALID = [
    # url, scope, hosted, registration token URL
    ("https://github.com/org", "organization", True, "https://api.github.com/orgs/org/actions/runners/registration-token"),
    ("https://github.com/org/", "organization", True, "https://api.github.com/orgs/org/actions/runners/registration-token"),
    ("https://github.com/org/repo/", "repository", True,
     "https://api.github.com/repos/org/repo/actions/runners/registration-token"),
    ("https://github.com/enterprises/my-enterprise", "enterprise", True,
     "https://api.github.com/enterprises/my-enterprise/actions/runners/registration-token"),
    ("https://github.com/ENTERPRISES/e", "enterprise", True,
     "https://api.github.com/enterprises/e/actions/runners/registration-token"),
    ("https://github.com/enterprises", "organization", True,
     "https://api.github.com/orgs/enterprises/actions/runners/registration-token"),
    ("https://www.github.com/org/repo", "repository", True,
     "https://api.github.com/repos/org/repo/actions/runners/registration-token"),
    ("http://github.localhost/org", "organization", True,
     "http://api.github.localhost/orgs/org/actions/runners/registration-token"),
    ("https://acme.ghe.com/org", "organization", True,
     "https://api.acme.ghe.com/orgs/org/actions/runners/registration-token"),
    ("https://ghes.example.com/org", "organization", False,
     "https://ghes.example.com/api/v3/orgs/org/actions/runners/registration-token"),
    ("http://localhost:8080/org/repo", "repository", False,
     "http://localhost:8080/api/v3/repos/org/repo/actions/runners/registration-token"),
    ("https://GitHub.com/org", "organization", True,
     "https://api.github.com/orgs/org/actions/runners/registration-token"),
]

INVALID = [
    "https://github.com",
    "https://github.com/",
    "https://github.com/some/random/path",
    "github.com/org",
    "ftp://github.com/org",
    "https:///org",
    "https://user:pw@github.com/org",
    "https://github.com/org?x=1",
    "",
    "   ",
    "https://github.com:99999/org",
]


@pytest.mark.parametrize(("url", "scope", "hosted", "reg_url"), VALID)
def test_valid_config_urls_parse(url: str, scope: str, hosted: bool, reg_url: str) -> None:
    config = parse_config_url(url, environ={})
    assert (config.scope, config.is_hosted, config.registration_token_url) == (scope, hosted, reg_url)
    assert not config.config_url.endswith("/")


@pytest.mark.parametrize("url", INVALID)
def test_invalid_config_urls_raise_config_error_naming_url_and_shapes(url: str) -> None:
    with pytest.raises(sc.ConfigError) as info:
        parse_config_url(url, environ={})
    assert repr(url.strip()) in str(info.value) or repr(url) in str(info.value)
    assert "enterprise, org, or repository" in str(info.value)


def test_force_ghes_even_when_empty_applies_to_hosted_hosts() -> None:
    for url in ("https://github.com/org", "https://acme.ghe.com/org"):
        config = parse_config_url(url, environ={"GITHUB_ACTIONS_FORCE_GHES": ""})
        assert not config.is_hosted
        assert config.api_base.endswith("/api/v3")


def test_normalized_url_is_sent_at_registration() -> None:
    assert parse_config_url("https://github.com/org/repo/", environ={}).config_url == "https://github.com/org/repo"


def test_non_string_url_is_a_config_error() -> None:
    with pytest.raises(sc.ConfigError):
        parse_config_url(42, environ={})  # type: ignore[arg-type]


def test_join_url_keeps_tenant_prefix_and_sorts_form_encoded_params() -> None:
    url = join_url("https://svc/AbC/", "/_apis/x/", {"name": "a b&c#d", "api-version": "6.0-preview"})
    assert url == "https://svc/AbC/_apis/x/?api-version=6.0-preview&name=a+b%26c%23d"
