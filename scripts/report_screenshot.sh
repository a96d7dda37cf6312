#!/usr/bin/env bash
# Run a 200-card demo batch (embedded mode, FaceID simulated at its 100/s quota), write its
# HTML report and screenshot it in headless Chromium (Debian's `chromium` package:
# apt-get install chromium fonts-noto-cjk). Everything happens in a fresh temporary folder:
# its own data dir, database and browser profile; nothing is fetched from the network.
#
#   scripts/report_screenshot.sh [OUT.png] [OUT.html]    (defaults: docs/report.png, docs/report-example.html)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT_PNG=${1:-docs/report.png}
OUT_HTML=${2:-docs/report-example.html}
CHROMIUM=${CHROMIUM:-chromium}
command -v "$CHROMIUM" >/dev/null || { echo "needs Debian's chromium: apt-get install chromium" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# only this run's settings: no database or broker of the caller's environment
for var in $(env | grep -o '^IDBATCH_[A-Z_]*' || true); do unset "$var"; done
export IDBATCH_DATA_DIR="$work/data" IDBATCH_BROKER_URL="memory://"

"$PY" -m app.cli demo --count 200 --seed 7 --provider tencent_faceid > "$work/demo.log"
batch=$("$PY" -m app.cli batches --json --limit 1 | "$PY" -c 'import json, sys; print(json.loads(sys.stdin.readline())["id"])')
"$PY" -m app.cli report "$batch" --html "$work/report.html" > /dev/null

"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --hide-scrollbars --window-size=1040,2000 \
  --screenshot="$work/report.png" "file://$work/report.html" 2> "$work/chromium.log" \
  || { cat "$work/chromium.log" >&2; exit 1; }

mkdir -p "$(dirname "$OUT_PNG")" "$(dirname "$OUT_HTML")"
cp "$work/report.png" "$OUT_PNG"
cp "$work/report.html" "$OUT_HTML"
echo "batch $batch: $OUT_PNG ($(wc -c < "$OUT_PNG") bytes), $OUT_HTML"
