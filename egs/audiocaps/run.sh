#!/usr/bin/env bash
# egs/audiocaps: audio captioning on AudioCaps (clips downloaded by the user).
#   ./run.sh --data_folder /corpora/audiocaps [--audio_pattern "{split}/{youtube_id}.wav"]
# Download, table rows, paper numbers and GPU needs: README.md. --help lists options.
set -euo pipefail
cd "$(dirname "$0")"
audio_folder="" audio_pattern=""
extra_options="audio_folder audio_pattern"
prepare_extra() {
  prepare_args=()
  if [ -n "$audio_folder" ]; then prepare_args+=(--audio_folder "$audio_folder"); fi
  if [ -n "$audio_pattern" ]; then prepare_args+=(--audio_pattern "$audio_pattern"); fi
}
. ../../recipes/paper_recipe.sh
