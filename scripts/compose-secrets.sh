#!/usr/bin/env bash
# Writes the Docker secrets docker-compose.yml mounts: fresh random values, consistent
# across files (the database URL holds the Postgres password, the AWS credentials MinIO's
# user). Refuses to overwrite: rotating a secret is a deliberate, per-service change.
#
#   scripts/compose-secrets.sh [DIR]        # default ./secrets (git-ignored)
#   IDBATCH_ACEDATA_TOKEN=... scripts/compose-secrets.sh   # your real AceData token
#
# Without IDBATCH_ACEDATA_TOKEN a random token is written: the stack's simulator accepts
# the deployment's own token (idbatch in production refuses the simulator's public one).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-secrets}
PY=${PYTHON:-python3}

if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
  echo "$DIR is not empty: refusing to overwrite secrets (remove it first to start over)" >&2
  exit 1
fi
mkdir -p "$DIR"
chmod 700 "$DIR"  # other host users cannot read the folder

IDBATCH_ACEDATA_TOKEN=${IDBATCH_ACEDATA_TOKEN:-} "$PY" - "$DIR" <<'PYEOF'
import base64
import os
import secrets
import sys
from pathlib import Path

folder = Path(sys.argv[1])
pg = secrets.token_urlsafe(32)
minio_user, minio_password = "idbatch-" + secrets.token_hex(4), secrets.token_urlsafe(32)
values = {
    "postgres_password": pg,
    "idbatch_database_url": f"postgresql+psycopg://idbatch:{pg}@postgres:5432/idbatch",
    "idbatch_pii_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),  # a Fernet key
    "idbatch_gateway_secret": secrets.token_urlsafe(48),
    "idbatch_acedata_token": os.environ["IDBATCH_ACEDATA_TOKEN"] or secrets.token_urlsafe(32),
    "aws_credentials": (
        f"[default]\naws_access_key_id = {minio_user}\naws_secret_access_key = {minio_password}"
    ),
    "minio_root_user": minio_user,
    "minio_root_password": minio_password,
    "grafana_admin_password": secrets.token_urlsafe(24),
}
for name, value in values.items():
    path = folder / name
    path.write_text(value + "\n", encoding="utf-8")
    # 0644: compose bind-mounts the file with this mode, and each container reads it as
    # its own non-root user (idbatch is uid 10001); the 0700 folder guards the host.
    path.chmod(0o644)
print(f"wrote {len(values)} secrets to {folder}/ (the folder is 0700)")
PYEOF
