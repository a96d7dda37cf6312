"""AceData ``POST /identity/idcard/check-1e`` (seeds 000_, 001_).

Bearer auth; 401 ``invalid_token`` for an unknown token, 429 ``too_many_requests`` over
the account's rate, 500 ``api_error`` for injected faults; otherwise 200 with FaceID's
business code in ``result``. Error bodies are ``{"success": false, "error": {...},
"trace_id": ...}`` as documented.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulator.fetch import DownloadError, download
from simulator.identity import faceid_answer
from simulator.state import SimState
from simulator.wire import drop_connection, hang

PATH = "/identity/idcard/check-1e"
CONFIG_TO_FACEID = {
    "copy_warn": "CopyWarn",
    "border_check_warn": "BorderCheckWarn",
    "reshoot_warn": "ReshootWarn",
    "detect_ps_warn": "DetectPsWarn",
    "temp_id_warn": "TempIdWarn",
    "quality": "Quality",
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"success": False, "error": {"code": code, "message": message}, "trace_id": str(uuid.uuid4())},
        status_code=status,
    )


class AceDataSim:
    def __init__(self, state: SimState, tokens: set[str], http: httpx.AsyncClient) -> None:
        self.state = state
        self.tokens = tokens
        self.http = http

    async def handle(self, request: Request) -> Response:
        state = self.state
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        if token not in self.tokens:
            state.record(f"acedata:{token[:8] or '-'}", "invalid_token")
            return _error(401, "invalid_token", "invalid or missing authorization token")
        account = f"acedata:{token}"
        if not state.admit("acedata", account):
            state.record(account, "too_many_requests")
            return _error(429, "too_many_requests", "you have exceeded the rate limit")
        if account in state.faults.arrears:
            state.record(account, "insufficient_balance")
            return _error(403, "insufficient_balance", "the account balance is insufficient")
        await state.latency()
        if state.in_outage() or state.roll(state.faults.rate_5xx):
            state.account(account).injected += 1
            state.record(account, "api_error")
            return _error(500, "api_error", "fetch failed")
        if state.roll(state.faults.rate_429):
            state.account(account).injected += 1
            state.record(account, "too_many_requests")
            return _error(429, "too_many_requests", "you have exceeded the rate limit")
        if state.roll(state.faults.rate_timeout):
            state.account(account).injected += 1
            await hang(request)
            return _error(500, "api_error", "timed out")
        if state.roll(state.faults.rate_reset):
            state.account(account).injected += 1
            return await drop_connection(request)
        try:
            body: dict[str, Any] = await request.json()
        except ValueError:
            return _error(400, "bad_request", "body is not valid JSON")
        url = body.get("image_url")
        if not isinstance(url, str) or not url:
            return _error(400, "bad_request", "image_url is required")
        config = body.get("config") or {}
        faceid_config = {CONFIG_TO_FACEID[k]: v for k, v in config.items() if k in CONFIG_TO_FACEID}
        trace_id = str(uuid.uuid4())
        try:
            image = await download(self.http, url)
        except DownloadError:
            state.record(account, "FailedOperation.DownLoadError")
            return JSONResponse(
                self._body("FailedOperation.DownLoadError", "File download failed.", trace_id=trace_id)
            )
        answer = faceid_answer(state, image, faceid_config)
        if answer.billable:
            state.bill(account, answer.result, _item_key(answer))
        else:
            state.record(account, answer.result)
        f = answer.fields
        return JSONResponse(
            self._body(
                answer.result,
                answer.description,
                trace_id=trace_id,
                sim=answer.sim,
                name=f.get("Name", ""),
                sex=f.get("Sex", ""),
                nation=f.get("Nation", ""),
                birth=f.get("Birth", ""),
                address=f.get("Address", ""),
                id_num=f.get("IdNum", ""),
                portrait="/9j/4AAQSkZJRgABAQAAAQABAAD" + "A" * 120 if f else "",
                warnings=",".join(answer.warnings),
                quality=answer.quality if "Quality" in faceid_config else 0,
            )
        )

    @staticmethod
    def _body(result: str, description: str, *, trace_id: str, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "sim": 0,
            "result": result,
            "description": description,
            "name": "",
            "sex": "",
            "nation": "",
            "birth": "",
            "address": "",
            "id_num": "",
            "portrait": "",
            "warnings": "",
            "quality": 0,
            "encryption": None,
        }
        body.update(fields)
        body["trace_id"] = trace_id
        return body


def _item_key(answer: Any) -> str | None:
    truth = answer.truth
    return None if truth is None else f"{truth.identity.id_number}:{truth.identity.portrait_seed}"
