"""Key ring, associated data and rotation (issue 13): tokens name their key, old keys still
read, a token moved to another column will not open, rotation re-encrypts and re-keys."""

from __future__ import annotations

import io
import json

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import app
from db.migrate import upgrade
from db.models import Job
from db.session import session_scope
from idbatch.pii import AD_CLAIMED_ID, AD_NAME, Vault, vault
from producers.keys import idempotency_key
from producers.submit import submit_manifest
from tests.conftest import Env

NUMBER = "310104199003071790"  # synthetic


def test_tokens_name_their_key_and_old_keys_still_read() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    token = Vault(old).encrypt(NUMBER)
    assert token is not None
    ring = Vault(new, [old])
    assert ring.decrypt(token) == NUMBER
    fresh = ring.encrypt(NUMBER)
    assert fresh is not None
    assert ring.token_key_id(fresh) == ring.current_key_id != ring.token_key_id(token)
    with pytest.raises(KeyError):
        Vault(old).decrypt(fresh)  # the new key is not in the old ring


def test_associated_data_binds_a_token_to_its_column() -> None:
    v = Vault(Fernet.generate_key())
    token = v.encrypt(NUMBER, AD_CLAIMED_ID)
    assert v.decrypt(token, AD_CLAIMED_ID) == NUMBER
    for wrong in (AD_NAME, None):
        with pytest.raises(InvalidTag):
            v.decrypt(token, wrong)


def test_rotation_reencrypts_every_token_and_rekeys_the_hashes(env: Env) -> None:
    old_key = Fernet.generate_key().decode()
    settings = env(pii_key=old_key)
    upgrade(settings.database_url)
    data = f"external_ref,front_image,name,id_number\nA,a.jpg,张三,{NUMBER}\nB,b.jpg,,\n".encode()
    batch = submit_manifest(io.BytesIO(data), source="m.csv", settings=settings, enqueue=False).batch_id

    new_key = Fernet.generate_key().decode()
    env(pii_key=new_key, pii_old_keys=json.dumps([old_key]))
    result = CliRunner().invoke(app, ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["jobs"] == 2
    v = vault()
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.batch_id == batch, Job.external_ref == "A")).one()
    assert v.token_key_id(job.claimed_id_enc) == v.current_key_id  # under the new key
    assert Vault(new_key.encode()).claims(job.claimed_name_enc, job.claimed_id_enc) == ("张三", NUMBER)
    assert job.claimed_id_hash == v.lookup_hash(NUMBER)  # re-keyed
    assert job.idempotency_key == idempotency_key("acedata", {}, "a.jpg", None, "张三", NUMBER)
    again = CliRunner().invoke(app, ["keys", "rotate"])
    assert json.loads(again.output)["jobs"] == 0  # nothing left: safe to drop the old key
