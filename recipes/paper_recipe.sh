#!/usr/bin/env bash
# Shared body of the paper recipes' run.sh (egs/librispeech, meld, clotho_aqa,
# spoken_squad, audiocaps, multitask): options, the paper's configurations
# (recipes/paper_rows.sh) and the stage driver (recipes/stages.sh).
# The sourcing run.sh may set before sourcing:
#   extra_options        names of its own options (their defaults set as variables)
#   prepare_extra        a function that sets the array prepare_args
#   systems_override     a function that sets systems and system_overrides (multitask)
tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)
recipes_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

stage=0 stop_stage=7 data_folder="" audiobench_test="" row=table3 llm=llama3 ngpu=1
num_nodes=1 cmd=local nj=1 system_jobs=auto tag="" epochs="" max_duration="" judge_template=""
train_config=conf/train.yaml decode_config=conf/decode.yaml train_args="" decode_args=""
python=${MOWE_PYTHON:-$(cd "$recipes_dir/.." && pwd)/.venv/bin/python}
_options="stage stop_stage data_folder audiobench_test row llm ngpu num_nodes cmd nj system_jobs tag epochs
          max_duration judge_template train_config decode_config train_args decode_args
          python ${extra_options:-}"
. "$tools_dir/parse_options.sh"
. ./cmd.sh

tag=${tag:-${row}_${llm}}
data_dir=data
provision_command=()     # hub ids (or local mirrors given as overrides): nothing to convert
pretrained_dir=""
. "$recipes_dir/paper_rows.sh"
paper_row_args "$row" "$llm"
# the recipe's conf/train.yaml lists the rows it supports (paper_rows)
rows=$("$python" -c 'import sys, ruamel.yaml
print(" ".join(ruamel.yaml.YAML(typ="safe").load(open(sys.argv[1])).get("paper_rows") or []))' \
  "$train_config") || { echo "$0: cannot read $train_config with $python" >&2; exit 2; }
if [ -n "$rows" ]; then
  case " $rows " in *" $row "*) ;; *)
    echo "$0: --row $row is not one of this recipe's rows ($train_config: $rows)" >&2; exit 2 ;;
  esac
fi
# the judge prompt and rating rule (used when score_args names a judge): AudioBench's
judge_template=${judge_template:-$paper_judge_template}
[ -n "${score_args+x}" ] || score_args=()
score_args+=(--judge_template "$judge_template")

validate_args=(--trim_seconds 30)  # the paper's window: longer clips are counted, trimmed
common_train_args=()
[ -n "$epochs" ] && common_train_args+=(--number_of_epochs="$epochs")
[ -n "$max_duration" ] && common_train_args+=(--max_duration="$max_duration")

systems=$row_systems
system_overrides() {
  system_args=("${common_train_args[@]}")
  case "$1" in
    baseline) system_args+=("${baseline_args[@]}") ;;
    *) system_args+=("${mowe_args[@]}") ;;
  esac
}
if declare -F systems_override >/dev/null; then systems_override; fi

prepare_args=()
if declare -F prepare_extra >/dev/null; then prepare_extra; fi
if [ -z "${prepare_command+x}" ]; then
  if [ -z "$data_folder" ] && [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    echo "$0: --data_folder DIR (the downloaded corpus) is required; see README.md" >&2
    exit 2
  fi
  prepare_command=("$python" local/prepare.py --data_folder "$data_folder"
                   --save_folder "$data_dir/raw" "${prepare_args[@]}")
  [ -n "$audiobench_test" ] && prepare_command+=(--audiobench_test "$audiobench_test")
  # --nj N: N jobs share the audio conversion (--shard J/N), then this command again
  # (conversions are resumable) writes the manifests
  prepare_merge_command=("${prepare_command[@]}")
fi

. "$recipes_dir/stages.sh"
