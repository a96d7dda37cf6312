"""The simulator's ASGI app: every provider protocol plus an admin API under ``/_sim``.

Admin endpoints (loopback use only):
    GET  /_sim/health          liveness
    GET  /_sim/stats           per-account calls, billable calls, over-quota refusals
    POST /_sim/faults          JSON of fault knobs (see simulator.state.Faults), e.g.
                               {"rate_5xx": 0.02}
                               {"codes": {"faceid:CompareFail": {"rate": 0.1}}}
                               {"next": {"ocr:IdCardTooSmall": 3}}
                               {"next": {"aliyun:464": {"count": 1,
                                         "message": "Invalid Result - algorithm runtime exception"}}}
                               {"next": {"faceid:IdPhotoNoExist": {"count": 1, "in": "result"}}}
                               {"ocr_warn_list": "seed", "aliyun_msg": "list", "extra_fields": true}
                               Code keys are "protocol:code" with protocol faceid, ocr,
                               aliyun (vendor status), aliyun-gateway (X-Ca-Error-Message)
                               or acedata; every documented code is in simulator.codes and
                               docs/simulator.md. A rate or count of 0 removes the knob.
    POST /_sim/quotas          {"acedata": 100, ...} per protocol or "protocol:account"
    POST /_sim/registry        JSON lines of RegistryEntry to enrol
    POST /_sim/revoke          {"id_numbers": [...]}: drop identities from the registry
                               (a revoked card: FaceID/AceData answer IdNoExistSystem)
    POST /_sim/reset           zero the counters
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator import acedata, aliyun, tencent
from simulator.cards import RegistryEntry
from simulator.state import SimState

DEFAULT_ACEDATA_TOKENS = frozenset({"sim-acedata-token"})
DEFAULT_TENCENT_SECRETS = tencent.DEFAULT_SECRETS
DEFAULT_ALIYUN_APPCODES = aliyun.DEFAULT_APPCODES


def create_app(
    state: SimState,
    *,
    acedata_tokens: set[str] | frozenset[str] = DEFAULT_ACEDATA_TOKENS,
    tencent_secrets: dict[str, str] | None = None,
    aliyun_appcodes: set[str] | frozenset[str] = DEFAULT_ALIYUN_APPCODES,
) -> Starlette:
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
    ace = acedata.AceDataSim(state, set(acedata_tokens), http)
    secrets = DEFAULT_TENCENT_SECRETS if tencent_secrets is None else tencent_secrets
    tc = tencent.TencentSim(state, dict(secrets), http)
    ali = aliyun.AliyunSim(state, set(aliyun_appcodes), http)

    async def health(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def stats(_: Request) -> Response:
        return JSONResponse(state.stats_json())

    async def faults(request: Request) -> Response:
        try:
            state.faults.update(await request.json())
        except (KeyError, ValueError, TypeError) as exc:
            return JSONResponse({"error": f"bad fault setting: {exc}"}, status_code=400)
        return JSONResponse(state.faults.as_dict())

    async def quotas(request: Request) -> Response:
        values: dict[str, Any] = await request.json()
        state.quotas.update({k: float(v) for k, v in values.items()})
        return JSONResponse(state.quotas)

    async def registry(request: Request) -> Response:
        added = 0
        for line in (await request.body()).decode().splitlines():
            if line.strip():
                entry = RegistryEntry(**json.loads(line))
                state.registry[entry.id_number] = entry
                added += 1
        return JSONResponse({"enrolled": added, "size": len(state.registry)})

    async def revoke(request: Request) -> Response:
        body = await request.json()
        numbers = body.get("id_numbers") if isinstance(body, dict) else None
        if not isinstance(numbers, list):
            return JSONResponse({"error": "id_numbers must be a list"}, status_code=400)
        return JSONResponse({"revoked": state.revoke(numbers), "size": len(state.registry)})

    async def reset(_: Request) -> Response:
        state.reset_stats()
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await http.aclose()

    return Starlette(
        routes=[
            Route(acedata.PATH, ace.handle, methods=["POST"]),
            Route(acedata.OTHER_PATHS, ace.other, methods=["POST"]),
            Route(tencent.FACEID_PREFIX + "/", tc.faceid, methods=["POST"]),
            Route(tencent.OCR_PREFIX + "/", tc.ocr, methods=["POST"]),
            Route("/", tc.root, methods=["POST"]),
            Route(aliyun.PATH, ali.handle, methods=["POST"]),
            Route("/_sim/health", health),
            Route("/_sim/stats", stats),
            Route("/_sim/faults", faults, methods=["POST"]),
            Route("/_sim/quotas", quotas, methods=["POST"]),
            Route("/_sim/registry", registry, methods=["POST"]),
            Route("/_sim/revoke", revoke, methods=["POST"]),
            Route("/_sim/reset", reset, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
