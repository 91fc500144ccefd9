#!/usr/bin/env bash
# egs/spoken_squad: spoken question answering on Spoken-SQuAD (sentence wavs joined
# per paragraph).
#   ./run.sh --data_folder /corpora/Spoken-SQuAD [--wav_folder DIR] [--row table3]
# Download, table rows, paper numbers and GPU needs: README.md. --help lists options.
set -euo pipefail
cd "$(dirname "$0")"
wav_folder=""
extra_options="wav_folder"
prepare_extra() {
  prepare_args=()
  if [ -n "$wav_folder" ]; then prepare_args+=(--wav_folder "$wav_folder"); fi
}
. ../../recipes/paper_recipe.sh
