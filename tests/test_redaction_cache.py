"""``redact_url`` keeps its answers per URL; a secret learnt later must still be hidden in them."""

from __future__ import annotations

from scaleset_client._secrets import Secret, redact_url


def test_a_secret_learnt_after_a_url_was_redacted_is_hidden_from_then_on() -> None:
    url = "https://broker.example/scalesets/message/zz-later-learnt-secret-0042"
    assert redact_url(url) == url  # nothing known to hide yet, and the answer is kept
    Secret("zz-later-learnt-secret-0042")
    assert redact_url(url) == "https://broker.example/scalesets/message/***"


def test_many_urls_stay_correct_past_the_cache_bound() -> None:
    urls = [f"https://api.example/x?lastMessageId={i}&token=t{i}" for i in range(600)]
    for url in urls:
        assert redact_url(url).endswith(f"lastMessageId={url.split('=')[1].split('&')[0]}&token=%2A%2A%2A")
    assert redact_url("https://user:pw@api.example/p") == "https://api.example/p"
