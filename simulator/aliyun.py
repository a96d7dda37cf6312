"""Aliyun-marketplace ID card OCR (seed 004_) behind a stand-in for Aliyun's API gateway.

``POST /ocr/idcard`` with ``Authorization: APPCODE <code>``; the body is JSON (the seed's
460/461 describe a JSON body, so anything else, a form included, is a 460) with
``image`` (base64, plain or urlencoded as the seed describes, or an http(s) URL),
``id_card_side`` (front/back), ``detect_direction``, ``detect_risk``, ``detect_photo``.
Account: ``aliyun:<appcode>``.

Gateway answers carry ``X-Ca-Error-Code`` and ``X-Ca-Error-Message`` (the six-character
codes here are illustrative; clients must classify by message)::

    missing/unknown APPCODE    403  Invalid AppCode
    over the account's rate    403  Throttled by APP Flow Control   (rate_429 too)
    account in arrears         403  User Arrears
    (outage)                   503  Backend Service Timeout

Vendor answers have no ``X-Ca-Error-*`` header: 200 with the recognition result (billed),
or the seed's codes — 413 body too large, 450 queue full (``rate_450``), 460 not JSON,
461 missing key, 462 image data errors, 502 (``rate_5xx``); every status of the seed (and
every gateway message of PROVIDERS.md) on demand with a code knob. The seed documents a
status and a message for each error but no body, so the message travels as the plain
text body, the least a vendor could send; clients must not need it (the status decides,
the message only refines). The 200 answer follows the seed's types: ``log_id`` a uint64,
``idcard_number_type`` a string, ``msg`` an object (or, with ``aliyun_msg = "list"``,
an array holding one object: the seed types it "array").
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import uuid
from typing import Any
from urllib.parse import unquote

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from stdnum.cn import ric

from simulator.cards import Truth
from simulator.codes import ALIYUN_MESSAGES, GATEWAY_ANSWERS
from simulator.fetch import DownloadError, download
from simulator.identity import FAKE_PORTRAIT, item_key, look_at
from simulator.state import CodeFault, SimState
from simulator.wire import drop_connection, hang

PATH = "/ocr/idcard"
DEFAULT_APPCODES = frozenset({"sim-aliyun-appcode"})
MAX_IMAGE_CHARS = 4 * 1024 * 1024  # after base64 and urlencode
MIN_SIDE, MAX_SIDE = 15, 4096
EDIT_TOOL = "Adobe Photoshop CC 2014 (Macintosh)"
EXTRA_FIELD = "sim_undocumented_field"  # Faults.extra_fields: clients must ignore it
RISK_TYPES = {"photocopy": "copy", "bw_copy": "copy", "temporary_id": "temporary", "screen_reshoot": "screen"}


def _gateway(status: int, code: str, message: str, request_id: str) -> Response:
    return Response(
        status_code=status,
        headers={"X-Ca-Error-Code": code, "X-Ca-Error-Message": message, "X-Ca-Request-Id": request_id},
    )


def _vendor(status: int, message: str, request_id: str) -> Response:
    """A vendor error: the seed's status, its message as plain text (no body is documented)."""
    headers = {"X-Ca-Request-Id": request_id}
    return Response(message, status_code=status, media_type="text/plain", headers=headers)


def _true(value: Any) -> bool:
    return str(value).lower() == "true" or value is True


class AliyunSim:
    def __init__(self, state: SimState, appcodes: set[str], http: httpx.AsyncClient) -> None:
        self.state = state
        self.appcodes = appcodes
        self.http = http

    async def handle(self, request: Request) -> Response:
        state = self.state
        request_id = str(uuid.uuid4())
        auth = request.headers.get("authorization", "")
        appcode = auth[len("APPCODE ") :] if auth.startswith("APPCODE ") else ""
        if appcode not in self.appcodes:
            state.record("aliyun:-", "Invalid AppCode")
            return _gateway(403, "I403IC", "Invalid AppCode `not exists`", request_id)
        account = f"aliyun:{appcode}"
        if not state.admit("aliyun", account):
            state.record(account, "Throttled by APP Flow Control")
            return _gateway(403, "A403AF", "Throttled by APP Flow Control", request_id)
        if account in state.faults.arrears:
            state.record(account, "User Arrears")
            return _gateway(403, "A403UA", "User Arrears", request_id)
        await state.latency()
        stats = state.account(account)
        injected = state.faults.take("aliyun-gateway", state.rng) or state.faults.take("aliyun", state.rng)
        if injected is not None:
            stats.injected += 1
            await request.body()
            return self._injected(account, injected, request_id)
        if state.in_outage():
            stats.injected += 1
            state.record(account, "503")
            return _gateway(503, "D503BT", "Backend Service Timeout", request_id)
        if state.roll(state.faults.rate_429):
            stats.injected += 1
            state.record(account, "Throttled by APP Flow Control")
            return _gateway(403, "A403AF", "Throttled by APP Flow Control", request_id)
        if state.roll(state.faults.rate_450):
            stats.injected += 1
            state.record(account, "450")
            return _vendor(450, ALIYUN_MESSAGES[450][0], request_id)
        if state.roll(state.faults.rate_5xx):
            stats.injected += 1
            state.record(account, "502")
            return _vendor(502, "Bad Gateway", request_id)
        if state.roll(state.faults.rate_timeout):
            stats.injected += 1
            await hang(request)
            return _vendor(408, "Request Timeout", request_id)
        if state.roll(state.faults.rate_reset):
            stats.injected += 1
            return await drop_connection(request)
        status, payload = await self._answer(request)
        if status == 200:
            truth = payload.pop("_truth", None)
            if state.faults.aliyun_msg == "list":
                payload["msg"] = [payload["msg"]] if payload["msg"] else []
            if state.faults.extra_fields:
                payload[EXTRA_FIELD] = {"nested": [1, "two"]}
            state.bill(
                account, str(payload.get("image_status")), item_key(truth, truth.side) if truth else None
            )
            return JSONResponse(payload, headers={"X-Ca-Request-Id": request_id})
        state.record(account, str(status))
        return _vendor(status, str(payload.get("error_msg", "")), request_id)

    def _injected(self, account: str, fault: CodeFault, request_id: str) -> Response:
        code = fault.code
        self.state.record(account, code.code)
        if code.protocol == "aliyun-gateway":
            status, gateway_code = GATEWAY_ANSWERS[code.code]
            return _gateway(status, gateway_code, code.code, request_id)
        return _vendor(code.status, fault.message or code.message, request_id)

    async def _params(self, request: Request) -> dict[str, Any] | None:
        """The JSON body as an object, whatever the Content-Type says; None if it is not."""
        try:
            parsed = json.loads(await request.body())
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    async def _answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        params = await self._params(request)
        if params is None:
            return 460, {"error_msg": "Invalid Input - failed to parse json"}
        image_value = params.get("image")
        if image_value is None:
            return 461, {"error_msg": "Invalid Input - json format error - missing key: image"}
        if not isinstance(image_value, str):
            return 461, {"error_msg": "Invalid Input - json format error - image format error"}
        side = str(params.get("id_card_side") or "")
        if side not in ("front", "back"):
            return 461, {"error_msg": "Invalid Input - json format error - json parse runtime exception"}
        prefix = "Invalid Input - image data error - "
        if image_value.startswith(("http://", "https://")):
            try:
                image = await download(self.http, image_value)
            except DownloadError:
                return 462, {"error_msg": prefix + "download image from url error"}
        else:
            # The gateway measures the image as it travelled: base64, then urlencoded.
            if "%" in image_value:  # sent urlencoded, as the seed describes
                travelled, image_value = len(image_value), unquote(image_value)
            else:
                specials = image_value.count("+") + image_value.count("/") + image_value.count("=")
                travelled = len(image_value) + 2 * specials
            if travelled > MAX_IMAGE_CHARS:
                return 413, {"error_msg": "Payload Too Large"}
            if not image_value:
                return 462, {"error_msg": prefix + "input image empty, please check your image binary data"}
            if image_value.startswith("data:"):
                return 462, {"error_msg": prefix + "please remove additional header: data:image/jpg:base64,"}
            try:
                image = base64.b64decode(image_value, validate=True)
            except (binascii.Error, ValueError):
                return 462, {"error_msg": prefix + "base64decode error, please check your image binary data"}
        look = look_at(image)
        if look.kind in ("empty", "undecodable") or look.format not in ("JPEG", "PNG", "BMP"):
            return 462, {"error_msg": prefix + "image decode failed, please check your image binary data"}
        if min(look.size) < MIN_SIDE or max(look.size) > MAX_SIDE:
            return 462, {"error_msg": prefix + "image decode failed, please check your image binary data"}
        return 200, _recognize(look.truth, side, params)


def _recognize(truth: Truth | None, side: str, params: dict[str, Any]) -> dict[str, Any]:
    log_id = random.getrandbits(64)  # uint64 (seed 004_): above 2**63 half the time
    body: dict[str, Any] = {"log_id": log_id, "words_result": {}, "words_result_num": 0, "msg": {}}
    if _true(params.get("detect_direction")):
        body["direction"] = 0
    if truth is None:
        body.update(image_status="non_idcard", idcard_number_type="-1")
        return body
    if truth.side != side or "reversed_side" in truth.variants:
        body.update(image_status="reversed_side", idcard_number_type="-1")
        return body
    status = "normal"
    if "blur" in truth.variants:
        status = "blurred"
    elif "glare" in truth.variants:
        status = "over_exposure"
    ident = truth.identity
    if side == "front":
        msg: dict[str, Any] = {
            "valid": ric.is_valid(ident.id_number),
            "name": ident.name,
            "birthday": ident.birth.strftime("%Y%m%d"),
            "sex": ident.sex,
            "idcardno": ident.id_number,
            "address": ident.address,
            "nation": ident.nation,
        }
        words = {
            "姓名": msg["name"],
            "性别": msg["sex"],
            "民族": msg["nation"],
            "出生": msg["birthday"],
            "住址": msg["address"],
            "公民身份号码": msg["idcardno"],
        }
        body["idcard_number_type"] = "1"
    else:
        msg = {
            "gov": ident.authority,
            "begindate": ident.valid_from.strftime("%Y%m%d"),
            "enddate": "长期" if ident.valid_to is None else ident.valid_to.strftime("%Y%m%d"),
        }
        words = {"签发机关": msg["gov"], "签发日期": msg["begindate"], "失效日期": msg["enddate"]}
    body["msg"] = msg
    body["words_result"] = {
        key: {"location": {"left": 40, "top": 60 + 50 * i, "width": 300, "height": 40}, "words": value}
        for i, (key, value) in enumerate(words.items())
    }
    body["words_result_num"] = len(words)
    body["image_status"] = status
    if _true(params.get("detect_risk")):
        body["risk_type"] = next((RISK_TYPES[v] for v in truth.variants if v in RISK_TYPES), "normal")
        if "photoshopped" in truth.variants:
            body["edit_tool"] = EDIT_TOOL
    if _true(params.get("detect_photo")) and side == "front":
        body["photo"] = FAKE_PORTRAIT
        body["photo_location"] = {"left": 560, "top": 70, "width": 240, "height": 300}
    body["_truth"] = truth
    return body
