"""A reference or a name holds no control character, whichever way it came in.

The manifest's rule (tests/input/test_hostile_manifests.py) holds for an upload's claims
(object metadata or sidecar, checked by the listener and the worker alike) and for the
HTTP API's cards: a TAB or newline would break the rows of an export or report, and an
ESC would reach an operator's terminal as an escape sequence.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from idbatch.fields import control_character
from idbatch.upload_claims import Claims, check_claims
from producers.api.cards import CardIn


@pytest.mark.parametrize(
    ("value", "found"),
    [("R-1", None), ("张伟", None), ("a\tb", "U+0009"), ("\x1b[31m", "U+001B"), ("x\x7f", "U+007F"),
     ("x\x85", "U+0085"), ("x\u00a0y", None)],
)  # fmt: skip
def test_control_character_names_the_first_one(value: str, found: str | None) -> None:
    assert control_character(value) == found


def test_upload_claims_refuse_a_control_character_in_ref_or_name() -> None:
    assert check_claims({"external_ref": "R\tX"}, "metadata of C1-front.jpg") == (
        "metadata of C1-front.jpg, field external_ref: contains a control character (U+0009)"
    )
    assert check_claims({"name": "Li\nLei"}, "sidecar C1.json") == (
        "sidecar C1.json, field name: contains a control character (U+000A)"
    )
    assert check_claims({"external_ref": "R-1", "name": "张伟"}, "x") == Claims("R-1", "张伟", None)


@pytest.mark.parametrize("field", ["external_ref", "name"])
def test_api_cards_refuse_a_control_character_in_ref_or_name(field: str) -> None:
    card = {"external_ref": "R-1", "front_image": "s3://b/f.jpg", field: "R\x1b]8;;https://x\x07"}
    with pytest.raises(ValidationError, match=r"contains a control character \(U\+001B\)"):
        CardIn.model_validate(card)
    assert CardIn.model_validate({"external_ref": "R 1", "front_image": "s3://b/f.jpg"}).external_ref == "R 1"
