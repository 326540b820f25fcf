#!/usr/bin/env bash
# Make bench/compare/.venv with the frameworks plait is compared with (LangGraph, Dask),
# apart from plait's own environment: `bash bench/compare/setup.sh`, then
# `bench/compare/.venv/bin/python bench/compare/compare.py` (plait is installed there too,
# from this checkout, so all three run on the same Python).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
"$python" -m venv "$here/.venv"
"$here/.venv/bin/pip" install -q --upgrade pip
"$here/.venv/bin/pip" install -q "langgraph>=0.2" "dask>=2024.1" -e "$root"
"$here/.venv/bin/python" -c "import langgraph, dask, plait; print('ok: langgraph, dask', dask.__version__, 'and plait', plait.__version__)"
