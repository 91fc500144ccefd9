#!/usr/bin/env bash
# egs/multitask: the paper's five-task training (LibriSpeech, MELD, Clotho-AQA,
# Spoken-SQuAD, AudioCaps), single-stage or two-stage (stage one ASR only, Table V).
# Run each dataset's recipe up to stage 2 first (its prepared manifests are combined):
#   for d in librispeech meld clotho_aqa spoken_squad audiocaps; do
#     ../$d/run.sh --data_folder ... --stop_stage 2; done
#   ./run.sh [--two_stage true] [--weights "1 1 1 1 1"] [--row table5] [--llm llama3]
# Table rows, paper numbers and GPU needs: README.md. --help lists options.
set -euo pipefail
cd "$(dirname "$0")"
datasets="librispeech meld clotho_aqa spoken_squad audiocaps" weights="" two_stage=false
extra_options="datasets weights two_stage"
set_prepare_command() {
  local manifests=() name
  if [ -n "$audiobench_test" ]; then
    echo "$0: --audiobench_test belongs to each dataset's recipe (its test set is then" \
         "combined here): ../<dataset>/run.sh --audiobench_test DIR --stop_stage 2" >&2
    exit 2
  fi
  for name in $datasets; do manifests+=("../$name/data/clean"); done
  prepare_command=("${python:-python}" local/prepare.py --manifests "${manifests[@]}"
                   --names $datasets --save_folder data/raw)
  if [ -n "$weights" ]; then prepare_command+=(--weights $weights); fi
  if [ "$two_stage" = true ]; then prepare_command+=(--asr_only_stage1); fi
}
systems_override() {
  set_prepare_command
  validate_manifests=(data/raw/{train,valid,test}.json)
  if [ "$two_stage" = true ]; then validate_manifests+=(data/raw/train_stage1.json); fi
  if [ -n "$weights" ]; then common_train_args+=(--sampling_weights=data/raw/sampling_weights.json); fi
  if [ "$two_stage" = true ]; then
    tag=${tag}_two_stage
    systems="baseline_asr baseline mowe_asr mowe"
  fi
  system_overrides() {
    system_args=("${common_train_args[@]}")
    case "$1" in
      baseline*) system_args+=("${baseline_args[@]}") ;;
      *) system_args+=("${mowe_args[@]}") ;;
    esac
    case "$1" in
      *_asr) system_args+=(--train_manifest=data/clean/train_stage1.json) ;;
      *) if [ "$two_stage" = true ]; then system_args+=(--init_from="exp/$tag/${1}_asr/save"); fi ;;
    esac
  }
}
. ../../recipes/paper_recipe.sh
