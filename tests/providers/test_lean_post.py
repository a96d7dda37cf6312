"""``common.post``: the hot path's POST is the request ``client.post`` would have sent."""

from __future__ import annotations

import httpx
import pytest

from idbatch.providers import common


def _capture() -> tuple[list[httpx.Request], httpx.Client]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(200, json={"ok": True}, headers={"set-cookie": "a=b"})

    return seen, httpx.Client(transport=httpx.MockTransport(handler), timeout=httpx.Timeout(7.0, connect=2.0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content": b'{"x":1}', "headers": {"X-TC-Action": "A", "Content-Type": "application/json"}},
        {"json": {"image_url": "http://h/i.jpg"}, "headers": {"accept": "application/json", "x-a": "1"}},
    ],
)
def test_same_request_as_client_post(kwargs: dict[str, object]) -> None:
    seen, client = _capture()
    with client:
        lean = common.post(client, "http://provider.test/path", **kwargs)  # type: ignore[arg-type]
        client.cookies.clear()
        full = client.post("http://provider.test/path", **kwargs)  # type: ignore[arg-type]
    a, b = seen
    assert (a.method, a.url, a.content) == (b.method, b.url, b.content)
    assert a.headers.multi_items() == b.headers.multi_items()  # same names, values and order
    assert a.extensions["timeout"] == b.extensions["timeout"]
    assert lean.json() == full.json() == {"ok": True}
    assert lean.request is a


def test_a_client_with_hooks_or_cookies_takes_the_full_path() -> None:
    hooked: list[str] = []
    seen, client = _capture()
    with client:
        client.event_hooks["request"] = [lambda r: hooked.append(str(r.url))]
        common.post(client, "http://provider.test/", content=b"{}", headers={})
        assert hooked == ["http://provider.test/"]
        client.event_hooks["request"] = []
        client.cookies.set("session", "1")
        common.post(client, "http://provider.test/", content=b"{}", headers={})
    assert "session=1" in seen[-1].headers["cookie"]  # the client's own cookie handling ran
