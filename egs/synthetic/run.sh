#!/usr/bin/env bash
# egs/synthetic: the offline 5-task recipe (ASR, ER, AQA, SQA, AC), end to end.
#   ./run.sh [--size tiny|small|default] [--seed N] [--stage N] [--stop_stage M]
#            [--ngpu N] [--num_nodes K] [--cmd local|slurm] [--nj N] [--tag NAME]
#            [--epochs N] [--systems "baseline mowe ..."]
#            [--train_args "--lr=1e-4 ..."] [--decode_args "--beam_size=4 ..."]
#            [--train_config conf/train.yaml] [--decode_config conf/decode.yaml]
# --nj N: synthesis and decoding as job arrays of N jobs (local or Slurm).
# --systems: any of baseline (base encoder only), mowe (+ weak encoders, both routers),
#   moe_adapter (base only, MoE adapter), mowe_moe_adapter (MoWE + MoE adapter).
set -euo pipefail
cd "$(dirname "$0")"
tools_dir=$(cd ../../tools && pwd)

stage=0 stop_stage=7 size=default seed=1234 ngpu=0 num_nodes=1 cmd=local nj=1 tag="" epochs=""
systems="baseline mowe"
train_config=conf/train.yaml decode_config=conf/decode.yaml train_args="" decode_args=""
python=${MOWE_PYTHON:-$(cd ../.. && pwd)/.venv/bin/python}
_options="stage stop_stage size seed ngpu num_nodes cmd nj tag epochs systems
          train_config decode_config train_args decode_args python"
. "$tools_dir/parse_options.sh"
. ./cmd.sh
# refuse an unknown corpus size before any stage runs
sizes=$("$python" -c "from mowe.synth.corpus import SIZES; print(' '.join(SIZES))") \
  || { echo "$0: cannot import mowe with $python (run tools/install.sh)" >&2; exit 2; }
case " $sizes " in *" $size "*) ;; *)
  echo "$0: --size $size is not a corpus size (choose one of: $sizes)" >&2; exit 2 ;; esac
known_systems="baseline mowe moe_adapter mowe_moe_adapter"
for system in $systems; do
  case " $known_systems " in *" $system "*) ;; *)
    echo "$0: unknown system '$system' in --systems (known: $known_systems)" >&2; exit 2 ;; esac
done

tag=${tag:-${size}_seed${seed}}
pretrained_dir=$(cd ../.. && pwd)/pretrained
data_dir=data/${size}_seed${seed}
prepare_command=("$python" -m mowe.synth --out "$data_dir/raw" --size "$size" --seed "$seed")
prepare_merge_command=("$python" -m mowe.synth --out "$data_dir/raw" --merge_shards "$nj")
epoch_args=()
[ -n "$epochs" ] && epoch_args=(--number_of_epochs="$epochs")
[ "$size" = tiny ] && epoch_args+=(--batch_size=4 --max_new_tokens=12)  # decode.py too: beats conf/decode.yaml
# Stage 7 (pack): model-card metadata of the packed models.
pack_args=(--license apache-2.0 --dataset mowe-synthetic-"$size"
           --base_model openai/whisper-tiny.en --base_model HuggingFaceTB/SmolLM2-135M-Instruct)
# Sets system_args: the overrides of one system (baseline = the model without MoWE).
system_overrides() {
  system_args=("--seed=$seed" "${epoch_args[@]}")
  case "$1" in
    baseline) system_args+=("--spec={mixture: null}") ;;
    moe_adapter) system_args+=("--spec={mixture: null, adapter_kind: moe}") ;;
    mowe_moe_adapter) system_args+=("--spec={adapter_kind: moe}") ;;
  esac
}

. ../../recipes/stages.sh
