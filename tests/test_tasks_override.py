"""Unit tests of queue-level HTTP target overrides (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import tasks_v2

from localcloud.tasks.errors import InvalidArgumentError
from localcloud.tasks.override import apply_override, override_from_pb
from localcloud.tasks.retry import RetryPolicy
from tests.support.builders import make_task


def target(**fields: Any) -> Any:
    return tasks_v2.HttpTarget.pb(tasks_v2.HttpTarget(**fields))


def test_uri_parts_are_replaced_or_cleared() -> None:
    task = make_task("https://old.example:8443/a/b?x=1", retry=RetryPolicy())
    uri = {"scheme": "HTTP", "host": "new.example", "port": 0, "path_override": {"path": ""}}
    sent = apply_override(task, override_from_pb(target(uri_override=uri)))
    assert sent.url == "http://new.example?x=1"
    kept = apply_override(task, override_from_pb(target(uri_override={"port": 9000})))
    assert kept.url == "https://old.example:9000/a/b?x=1"
    if_missing = {"host": "new.example", "uri_override_enforce_mode": "IF_NOT_EXISTS"}
    untouched = apply_override(task, override_from_pb(target(uri_override=if_missing)))
    assert untouched.url == task.url


def test_method_headers_and_token_override_the_task() -> None:
    task = make_task(headers={"x-q": "task", "Keep": "k"}, oidc_email="t@x", oidc_audience="a")
    override = override_from_pb(
        target(
            http_method="GET",
            header_overrides=[{"header": {"key": "X-Q", "value": "queue"}}],
            oidc_token={"service_account_email": "q@x"},
        )
    )
    sent = apply_override(task, override)
    assert sent.http_method == 2 and sent.url == task.url
    assert sent.headers == {"Keep": "k", "X-Q": "queue"}
    assert (sent.oidc_email, sent.oidc_audience) == ("q@x", "")
    assert task.headers == {"x-q": "task", "Keep": "k"}  # the stored task is unchanged


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"oauth_token": {"service_account_email": "a@b"}}, "oauth_token is not supported"),
        ({"oidc_token": {"audience": "x"}}, "service_account_email is required"),
        ({"uri_override": {"host": ""}}, "host must not be empty"),
        ({"uri_override": {"port": 70000}}, "port must be in"),
        ({"header_overrides": [{"header": {"key": "Bad Name", "value": "v"}}]}, "header name"),
    ],
)
def test_invalid_overrides(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        override_from_pb(target(**fields))
