#!/usr/bin/env bash
# The benchmark's own environment, bench/.venv (never the project's venv):
#   mitmproxy and proxy.py from PyPI (the Python peers cordon is compared with),
#   plus cordon itself, editable, so the benchmark runs this checkout's code.
# Prefers the newest python3.1x on PATH (mitmproxy 12 needs Python 3.12+; on 3.11
# pip picks the newest mitmproxy that still supports it). Re-running is cheap.
# Override the interpreter with PYTHON=/path/to/python3.12 bench/setup.sh.
set -euo pipefail
cd "$(dirname "$0")"

py=${PYTHON:-}
if [ -z "$py" ]; then
  for cand in python3.13 python3.12 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py=$cand; break
    fi
  done
fi
[ -n "$py" ] || { echo "bench/setup.sh: needs Python 3.11+" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench/setup.sh: needs curl (the load generator)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "bench/setup.sh: needs openssl (proxy.py's interception calls it)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check mitmproxy proxy.py
.venv/bin/python -m pip install -q --disable-pip-version-check -e ..
.venv/bin/python - <<'PY'
import importlib.metadata as md, sys
print(f"bench/.venv: Python {sys.version.split()[0]}, "
      f"mitmproxy {md.version('mitmproxy')}, proxy.py {md.version('proxy.py')}, cordon {md.version('cordon')}")
PY
