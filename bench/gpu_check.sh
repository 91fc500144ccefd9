#!/usr/bin/env bash
# The device check, first thing on a lent GPU: every GPU figure under one folder.
#   bench/gpu_check.sh OUT [--tiny] [--skip PARTS] [--config_dir DIR] [...]
# OUT gets figures.json (rewritten after every part), summary.txt, a log per part, the
# paper-size step's top kernels and the recipe's logs; bench/gpu_check.py --help says
# what each part runs. Without CUDA it exits 2 at once; --tiny checks it on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
out=$1; shift
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python=${MOWE_PYTHON:-python3}
[ -z "${MOWE_PYTHON:-}" ] && [ -x .venv/bin/python ] && python=.venv/bin/python
# MOWE_WHEELS=DIR: wheels of the stack for a machine whose Python lacks it (installed into a
# temporary folder put first on PYTHONPATH; nothing is downloaded)
if [ -n "${MOWE_WHEELS:-}" ]; then
  site=$(mktemp -d)
  "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$MOWE_WHEELS"/*.whl
  export PYTHONPATH=$site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
exec "$python" bench/gpu_check.py --out "$out" "$@"
