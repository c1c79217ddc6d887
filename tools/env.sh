#!/usr/bin/env bash
# Create (or refresh) .venv with the pinned stack.
#   bash tools/env.sh            the runtime stack only: what `make run` needs
#   bash tools/env.sh --dev      the runtime stack and the dev extras (tests, notebooks, docs)
#   bash tools/env.sh --browser  --dev, and Debian's chromium for the docs-site browser test
# Idempotent: a part is installed again only when pyproject.toml or constraints.txt is newer than its stamp.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
fresh() { [ -f "$1" ] && ! [ pyproject.toml -nt "$1" ] && ! [ constraints.txt -nt "$1" ]; }
install() {  # $1: stamp file, $2: pip target, $3: what it is
  fresh "$1" && return 0
  echo "setting up .venv ($3; torch==2.13.0 CPU build)..."
  [ -x .venv/bin/python ] || { python3 -m venv .venv && .venv/bin/python -m pip install -q --upgrade pip; }
  .venv/bin/python -m pip install -q -c constraints.txt -e "$2"
  touch "$1"
}
if [ -z "$mode" ]; then fresh .venv/.installed-dev || install .venv/.installed . "pinned runtime stack"
else install .venv/.installed-dev ".[dev]" "pinned runtime stack and dev extras"; fi
if [ "$mode" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian's chromium for the docs-site browser test..."
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null
fi
