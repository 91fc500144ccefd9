#!/usr/bin/env bash
# egs/librispeech: ASR on LibriSpeech with the paper's model and its baseline.
#   ./run.sh --data_folder /corpora/LibriSpeech [--row table3] [--llm llama3] [--ngpu 1]
# Download, table rows, paper numbers and GPU needs: README.md. --help lists options.
set -euo pipefail
cd "$(dirname "$0")"
train_splits="train-clean-100 train-clean-360 train-other-500" valid_splits=dev-clean
test_splits=test-clean
extra_options="train_splits valid_splits test_splits"
prepare_extra() {
  prepare_args=(--train_splits $train_splits --valid_splits $valid_splits
                --test_splits $test_splits)
}
. ../../recipes/paper_recipe.sh
