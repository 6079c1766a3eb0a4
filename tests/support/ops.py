"""Helpers for the router's operations tests: HTTP calls to its endpoint and its metrics read
back with prometheus_client's own parser."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def call(
    url: str,
    method: str = "GET",
    body: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One HTTP request; (status, body), errors included."""
    sent = dict(headers or {})
    data = None
    if method == "POST":
        data = json.dumps(body or {}).encode()
        sent.setdefault("Content-Type", "application/json")
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data, sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str, **kwargs: Any) -> Any:
    status, body = call(url, **kwargs)
    assert status == 200, (status, body)
    return json.loads(body)


def post(url: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    status, answer = call(url, "POST", body, **kwargs)
    assert status == 200, (status, answer)
    return json.loads(answer)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics(url: str, **kwargs: Any) -> Samples:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    status, body = call(url + "/metrics", **kwargs)
    assert status == 200, (status, body)
    return parse_metrics(body)


def parse_metrics(body: bytes) -> Samples:
    """Metrics in the text format as {(sample name, sorted labels): value}."""
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def steps(events: list[dict[str, Any]], **match: Any) -> Counter[str]:
    """How many journal events of each step match ``match`` (field=value)."""
    return Counter(
        e["step"] for e in events if all(e.get(key) == value for key, value in match.items())
    )
