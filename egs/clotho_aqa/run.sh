#!/usr/bin/env bash
# egs/clotho_aqa: audio question answering on Clotho-AQA.
#   ./run.sh --data_folder /corpora/clotho_aqa [--majority_answer true] [--row table3]
# Download, table rows, paper numbers and GPU needs: README.md. --help lists options.
set -euo pipefail
cd "$(dirname "$0")"
majority_answer=false
extra_options="majority_answer"
prepare_extra() {
  prepare_args=()
  if [ "$majority_answer" = true ]; then prepare_args+=(--majority_answer); fi
}
. ../../recipes/paper_recipe.sh
