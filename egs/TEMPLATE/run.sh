#!/usr/bin/env bash
# egs/TEMPLATE: a new dataset's recipe (made by tools/new_recipe.sh NAME; README.md).
#   ./run.sh --data_folder DIR [--task asr] [--stage N] [--stop_stage M] [--ngpu N]
#            [--train_args "--lr=1e-4 ..."] [--decode_args "--beam_size=4 ..."]
#            [--pretrained_dir DIR]
# DIR holds the clips and answers.tsv (local/prepare.py). --help lists options.
# Stages (recipes/stages.sh): 0 provision the bundled offline models, 1 prepare,
# 2 validate audio, 3 train, 4 decode, 5 score, 6 report, 7 pack.
set -euo pipefail
cd "$(dirname "$0")"
tools_dir=$(cd ../../tools && pwd)

stage=0 stop_stage=7 data_folder="" task=asr ngpu=0 num_nodes=1 cmd=local nj=1 tag=default
systems="baseline mowe" system_jobs=auto
train_config=conf/train.yaml decode_config=conf/decode.yaml train_args="" decode_args=""
python=${MOWE_PYTHON:-$(cd ../.. && pwd)/.venv/bin/python}
pretrained_dir=$(cd ../.. && pwd)/pretrained  # the bundled offline models (stage 0)
_options="stage stop_stage data_folder task ngpu num_nodes cmd nj system_jobs tag systems
          train_config decode_config train_args decode_args python pretrained_dir"
. "$tools_dir/parse_options.sh"
. ./cmd.sh

if [ -z "$data_folder" ] && [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "$0: --data_folder DIR (the clips and answers.tsv) is required; see README.md" >&2
  exit 2
fi
data_dir=data
prepare_command=("$python" local/prepare.py --data_folder "$data_folder"
                 --save_folder "$data_dir/raw" --task "$task")
# Sets system_args: the overrides of one system (baseline = the model without MoWE).
system_overrides() {
  system_args=()
  case "$1" in
    baseline) system_args+=("--spec={mixture: null}") ;;
  esac
}

. ../../recipes/stages.sh
