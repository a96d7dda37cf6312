"""Review finding 8 (issue 13): portraits and crops are stored only as digests, including the
crops Tencent OCR nests in ``AdvancedInfo``, a JSON document inside a string."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from db import jobs as job_store
from db.models import Batch, Result
from db.session import session_scope
from idbatch.pii import AD_RAW, strip_images, vault
from tests.billing.test_sides import ocr_stack
from tests.durability.conftest import Stack, pg_db

__all__ = ["ocr_stack", "pg_db"]

LONG_BASE64 = re.compile(r"[A-Za-z0-9+/=]{100,}")  # the simulator's fake portrait is ~150


def test_strip_images_reaches_into_json_strings_and_unknown_fields() -> None:
    crop = "Q" * 4000
    answer = {"AdvancedInfo": json.dumps({"Portrait": crop, "IdCard": crop, "WarnInfos": [-9102]}), "x": crop}
    stored = json.dumps(strip_images(answer))
    assert not LONG_BASE64.search(stored)
    assert json.loads(strip_images(answer)["AdvancedInfo"])["WarnInfos"] == [-9102]  # warnings survive


def test_a_real_ocr_answer_with_crops_is_stored_without_them(ocr_stack: Stack) -> None:
    stack = ocr_stack
    batch = stack.submit()
    with session_scope() as session:  # ask for both crops, as a user might
        session.get_one(Batch, batch).provider_config = {"crop_portrait": True, "crop_id_card": True}
    job_store._batch_facts.clear()  # the worker's per-process cache of batch facts
    stack.run_open(batch)
    v = vault()
    with session_scope() as session:
        raws = [v.decrypt_json(r.raw_enc, AD_RAW) for r in session.scalars(select(Result))]
    assert raws
    dumped = json.dumps(raws)
    assert "<image sha256:" in dumped  # the crops came back and were replaced by digests
    assert not LONG_BASE64.search(dumped)


def test_stored_raw_answers_keep_only_documented_fields() -> None:
    from idbatch.raw_answers import raw_for_storage

    answer = {"front": {"Name": "x", "IdNum": "y", "Sim": "91.2", "SelfieBase64": "Z" * 3000, "NewField": 1}}
    stored = raw_for_storage(answer)
    assert stored["front"]["Sim"] == "91.2" and stored["front"]["Name"] == "x"
    assert "SelfieBase64" not in stored["front"] and "NewField" not in stored["front"]
    assert stored["front"]["_dropped"] == ["NewField", "SelfieBase64"]  # named, not silently gone


def test_the_aliyun_seeds_documented_result_fields_are_kept() -> None:
    """Seed 004_ documents idcard_number_type, valid and photo_location: they are not dropped."""
    from idbatch.raw_answers import raw_for_storage

    answer = {
        "front": {
            "idcard_number_type": "1",
            "valid": True,
            "photo_location": {"left": 1, "top": 2, "width": 3, "height": 4},
            "image_status": "normal",
        }
    }
    stored = raw_for_storage(answer)["front"]
    assert "_dropped" not in stored
    assert stored["idcard_number_type"] == "1" and stored["valid"] is True
    assert stored["photo_location"]["width"] == 3
