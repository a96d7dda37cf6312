"""Fixtures for provider contract tests: the simulator over real HTTP, cards, adapters."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from idbatch.providers.acedata import AceDataProvider
from idbatch.providers.aliyun_market import AliyunMarketProvider
from idbatch.providers.base import ImageSource, VerifyRequest
from idbatch.providers.tencent_faceid import TencentFaceIdProvider
from idbatch.providers.tencent_ocr import TencentOcrProvider
from idbatch.servers import BackgroundServer
from simulator.app import create_app
from simulator.cards import Identity, RegistryEntry, Truth, make_id_number, render
from simulator.state import Faults, SimState

SECRET_ID = "sim-tencent-secret-id"
SECRET_KEY = "sim-tencent-secret-key"
APPCODE = "sim-aliyun-appcode"
ACEDATA_TOKEN = "sim-acedata-token"
ALL_WARNINGS = {
    "copy_warn": True,
    "border_check_warn": True,
    "reshoot_warn": True,
    "detect_ps_warn": True,
    "temp_id_warn": True,
    "quality": True,
    "invalid_date_warn": True,
    "reflect_warn": True,
}


def identity(seed: int = 7) -> Identity:
    rng = random.Random(seed)
    return Identity(
        name="测试样本",
        sex="男",
        nation="汉",
        birth=dt.date(1987, 1, 1),
        address="北京市东城区测试路1号",
        id_number=make_id_number(rng, dt.date(1987, 1, 1), male=True),
        authority="北京市公安局东城分局",
        valid_from=dt.date(2015, 3, 4),
        valid_to=dt.date(2035, 3, 4),
        portrait_seed=rng.randrange(1, 2**31),
    )


def card(side: str = "front", variants: list[str] | None = None, ident: Identity | None = None) -> bytes:
    return render(Truth(side, ident or identity(), variants or []), size=(428, 270), quality=70)


@dataclass
class ImageHost:
    """Serves test images at URLs, for the ImageUrl / image_url hand-offs."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)

    def put(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"{self.url}/img/{name}"


@dataclass
class Sim:
    url: str
    state: SimState
    images: ImageHost
    client: httpx.Client

    def stats(self, account: str) -> dict[str, Any]:
        return dict(self.state.stats_json()["accounts"].get(account, {}))

    def enrol(self, ident: Identity, *, name: str | None = None, portrait_seed: int | None = None) -> None:
        self.state.registry[ident.id_number] = RegistryEntry(
            ident.id_number, name or ident.name, portrait_seed or ident.portrait_seed
        )

    def faceid(self, **kw: Any) -> TencentFaceIdProvider:
        return TencentFaceIdProvider(
            self.client,
            base_url=self.url + "/tencent/faceid",
            secret_id=kw.pop("secret_id", SECRET_ID),
            secret_key=kw.pop("secret_key", SECRET_KEY),
            **kw,
        )

    def ocr(self, **kw: Any) -> TencentOcrProvider:
        return TencentOcrProvider(
            self.client,
            base_url=self.url + "/tencent/ocr",
            secret_id=kw.pop("secret_id", SECRET_ID),
            secret_key=kw.pop("secret_key", SECRET_KEY),
            **kw,
        )

    def aliyun(self, **kw: Any) -> AliyunMarketProvider:
        return AliyunMarketProvider(self.client, base_url=self.url, appcode=kw.pop("appcode", APPCODE), **kw)

    def acedata(self, **kw: Any) -> AceDataProvider:
        return AceDataProvider(self.client, base_url=self.url, token=kw.pop("token", ACEDATA_TOKEN), **kw)

    def request(
        self,
        front: bytes,
        back: bytes | None = None,
        config: dict[str, Any] | None = None,
        *,
        as_url: bool = False,
    ) -> VerifyRequest:
        def source(name: str, data: bytes) -> ImageSource:
            url = self.images.put(name, data)
            return ImageSource(ref=name, url=url, load=None if as_url else (lambda: data))

        return VerifyRequest(
            job_id=1,
            front=source("front.jpg", front),
            back=source("back.jpg", back) if back is not None else None,
            config=dict(ALL_WARNINGS if config is None else config),
        )


@pytest.fixture
def sim() -> Iterator[Sim]:
    """The simulator (all four protocols) plus a small image host, both on loopback."""
    host = ImageHost("")

    async def serve(request: Request) -> Response:
        data = host.files.get(request.path_params["name"])
        return Response(status_code=404) if data is None else Response(data, media_type="image/jpeg")

    image_app = Starlette(routes=[Route("/img/{name}", serve)])
    state = SimState(seed=3, quotas={"aliyun": 1000.0})
    with (
        BackgroundServer(image_app) as images,
        BackgroundServer(create_app(state)) as server,
        httpx.Client(timeout=httpx.Timeout(5.0)) as client,
    ):
        host.url = images.url
        yield Sim(server.url, state, host, client)


@pytest.fixture(scope="module")
def _shared_servers() -> Iterator[Sim]:
    host = ImageHost("")

    async def serve(request: Request) -> Response:
        data = host.files.get(request.path_params["name"])
        return Response(status_code=404) if data is None else Response(data, media_type="image/jpeg")

    state = SimState(seed=3, quotas={"aliyun": 1000.0})
    with (
        BackgroundServer(Starlette(routes=[Route("/img/{name}", serve)])) as images,
        BackgroundServer(create_app(state)) as server,
        httpx.Client(timeout=httpx.Timeout(5.0)) as client,
    ):
        host.url = images.url
        yield Sim(server.url, state, host, client)


@pytest.fixture
def shared_sim(_shared_servers: Sim) -> Sim:
    """Like ``sim`` but one server pair per module, its state wiped before each test:
    for the long parametrized tables (one HTTP call each), where starting two servers
    per case would cost more than the case."""
    sim = _shared_servers
    state = sim.state
    state.faults = Faults()
    state.registry.clear()
    state.reset_stats()
    state.quotas.clear()
    state.quotas.update({"acedata": 50.0, "faceid": 100.0, "ocr": 20.0, "aliyun": 1000.0})
    state.clock = time.monotonic
    sim.images.files.clear()
    return sim
