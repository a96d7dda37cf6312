"""AceData ``POST /identity/idcard/check-1e`` (seeds 000_, 001_).

Bearer auth; only the seed's five errors, as its error example shows them
(``{"success": false, "error": {"code", "message"}, "trace_id"}``)::

    400 token_mismatched     a body that is not a JSON object or lacks image_url (the
                             seed: "missing or invalid parameters"); an account in arrears
    400 api_not_implemented  a POST to another path under /identity/
    401 invalid_token        a missing or unknown token
    429 too_many_requests    over the account's rate, or rate_429
    500 api_error            rate_5xx, an outage, a hung call

Otherwise 200 with FaceID's business code in ``result``, every field of the seed's
success example and nothing more (no ``trace_id``: the example has none). A code knob
``acedata:<code>`` answers one of the five errors, ``acedata:<FaceID code>`` relays that
FaceID code in ``result``.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulator.codes import ACEDATA_ERRORS
from simulator.fetch import DownloadError, download
from simulator.identity import faceid_answer
from simulator.state import CodeFault, SimState
from simulator.wire import drop_connection, hang

PATH = "/identity/idcard/check-1e"
OTHER_PATHS = "/identity/{rest:path}"
EXTRA_FIELD = "sim_undocumented_field"  # Faults.extra_fields: clients must ignore it
CONFIG_TO_FACEID = {
    "copy_warn": "CopyWarn",
    "border_check_warn": "BorderCheckWarn",
    "reshoot_warn": "ReshootWarn",
    "detect_ps_warn": "DetectPsWarn",
    "temp_id_warn": "TempIdWarn",
    "quality": "Quality",
}


def _documented(code: str) -> JSONResponse:
    status, message = ACEDATA_ERRORS[code]
    return _error(status, code, message)


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

    def _token(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        return token if token in self.tokens else None

    async def other(self, request: Request) -> Response:
        """Any other API path: authenticated callers learn it is not implemented."""
        await request.body()
        if self._token(request) is None:
            return _documented("invalid_token")
        return _documented("api_not_implemented")

    async def handle(self, request: Request) -> Response:
        state = self.state
        token = self._token(request)
        if token is None:
            state.record("acedata:-", "invalid_token")
            return _documented("invalid_token")
        account = f"acedata:{token}"
        if not state.admit("acedata", account):
            state.record(account, "too_many_requests")
            return _documented("too_many_requests")
        if account in state.faults.arrears:
            state.record(account, "token_mismatched")
            return _documented("token_mismatched")
        await state.latency()
        injected = state.faults.take("acedata", state.rng)
        if injected is not None:
            state.account(account).injected += 1
            return self._injected(account, injected)
        if state.in_outage() or state.roll(state.faults.rate_5xx):
            state.account(account).injected += 1
            state.record(account, "api_error")
            return _error(500, "api_error", "fetch failed")
        if state.roll(state.faults.rate_429):
            state.account(account).injected += 1
            state.record(account, "too_many_requests")
            return _documented("too_many_requests")
        if state.roll(state.faults.rate_timeout):
            state.account(account).injected += 1
            await hang(request)
            return _error(500, "api_error", "timed out")
        if state.roll(state.faults.rate_reset):
            state.account(account).injected += 1
            return await drop_connection(request)
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        url = body.get("image_url") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(url, str) or not url:
            state.record(account, "token_mismatched")
            return _documented("token_mismatched")
        config: dict[str, Any] = body["config"] if isinstance(body.get("config"), dict) else {}
        faceid_config = {CONFIG_TO_FACEID[k]: v for k, v in config.items() if k in CONFIG_TO_FACEID}
        try:
            image = await download(self.http, url)
        except DownloadError:
            state.record(account, "FailedOperation.DownLoadError")
            return JSONResponse(self._body("FailedOperation.DownLoadError", "File download failed."))
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

    def _injected(self, account: str, fault: CodeFault) -> Response:
        """One of the seed's errors, or a FaceID code relayed in ``result`` (billed)."""
        code = fault.code
        if code.protocol == "acedata":
            self.state.record(account, code.code)
            return _documented(code.code)
        self.state.bill(account, code.code, None)
        return JSONResponse(self._body(code.code, code.message))

    def _body(self, result: str, description: str, **fields: Any) -> dict[str, Any]:
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
        if self.state.faults.extra_fields:
            body[EXTRA_FIELD] = {"nested": [1, "two"]}
        return body


def _item_key(answer: Any) -> str | None:
    truth = answer.truth
    return None if truth is None else f"{truth.identity.id_number}:{truth.identity.portrait_seed}"
