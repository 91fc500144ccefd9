#!/usr/bin/env bash
# egs/meld: emotion recognition on MELD (audio extracted from the mp4 clips with ffmpeg).
#   ./run.sh --data_folder /corpora/MELD.Raw [--row table3] [--llm llama3] [--ngpu 1]
# Download, table rows, paper numbers and GPU needs: README.md. --help lists options.
set -euo pipefail
cd "$(dirname "$0")"
jobs=8
extra_options="jobs"
prepare_extra() { prepare_args=(--jobs "$jobs"); }
. ../../recipes/paper_recipe.sh
