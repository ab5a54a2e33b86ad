#!/usr/bin/env bash
# Sets up .venv in the checkout with everything crossview needs (idempotent: a stamp
# holding the hash of pyproject.toml and this script skips the install when nothing changed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null || py=python3
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=.venv/.crossview-stamp
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first: pinned to the releases this machine kind keeps on local disk (Ultralytics needs torch).
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
# lap up front, or Ultralytics pip-installs it at run time.
.venv/bin/python -m pip install --quiet -e ".[dev,detect,openvino,torch,ann,postgres,mllm,api,calibrate]"
# Browser tests drive Debian's Chromium through Playwright (no browser download is possible here).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }) \
      || echo "warning: could not install chromium; browser tests will skip" >&2
  else
    echo "warning: chromium not found and not root; browser tests will skip" >&2
  fi
fi
echo "$want" > "$stamp"
