"""The outbox reaches its targets through the environment's proxy, as requests would."""

from __future__ import annotations

import pytest
import urllib3

from worker.outbox import _pool_for


def test_a_target_goes_through_the_proxy_unless_bypassed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert not isinstance(_pool_for("http://warehouse.test/n"), urllib3.ProxyManager)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    proxied = _pool_for("http://warehouse.test/n")
    assert isinstance(proxied, urllib3.ProxyManager)
    assert proxied.proxy is not None and proxied.proxy.host == "proxy.test"
    monkeypatch.setenv("NO_PROXY", "warehouse.test")
    assert not isinstance(_pool_for("http://warehouse.test/n"), urllib3.ProxyManager)
