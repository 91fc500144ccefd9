#!/usr/bin/env bash
# egs/synthetic: the offline 5-task recipe (ASR, ER, AQA, SQA, AC), end to end.
#   ./run.sh [--size tiny|small|default|study|freeform_tiny|large] [--seed N]
#            [--stage N] [--stop_stage M] [--ngpu N] [--num_nodes K]
#            [--cmd local|slurm] [--nj N] [--system_jobs N|auto] [--tag NAME]
#            [--epochs N] [--systems "baseline mowe ..."] [--train_seed N]
#            [--train_args "--lr=1e-4 ..."] [--decode_args "--beam_size=4 ..."]
#            [--train_config conf/train.yaml] [--decode_config conf/decode.yaml]
#            [--pretrained_dir DIR] [--data_dir DIR]
# --pretrained_dir DIR: the provisioned models (default: the repository's pretrained/);
# --data_dir DIR: the corpus folder, raw/ and clean/ manifests (default:
#   data/<size>_seed<seed>); stage 1 synthesizes into it.
# --nj N: synthesis and decoding as job arrays of N jobs (local or Slurm).
# --system_jobs N: systems trained, decoded, scored and packed at once (auto: every
#   system with Slurm; on this machine's CPUs one per core, the cores shared out).
# --seed N: the corpus's seed (and the training seed unless --train_seed is given);
#   --train_seed N changes training only, on the same corpus (sweep.sh runs seeds).
# --systems: any of baseline (base encoder only, frozen), baseline_ft (base only, base
#   encoder fine-tuned), mowe (+ 4 small weak encoders, indep + dep routers), mowe_indep,
#   mowe_dep, mowe_dep_dep (Table IV router ablations), mowe_pretrained_pool (paper-analog:
#   Whisper base + 4 pretrained Whisper tiny.en weak encoders,
#   recipes/conf/model/offline_paper_analog.yaml), baseline_whisper_base (its base
#   encoder alone: the paper-analog system's own baseline), mowe_specialist_pool (paper
#   Sec. V-B analog: 2 Whisper tiny.en + an emotion and a sound-scene specialist pretrained
#   in stage 0 on corpora of their own, prior on the emotion one,
#   recipes/conf/model/specialist_pool.yaml), moe_adapter (base only, MoE adapter),
#   mowe_moe_adapter (MoWE + MoE adapter).
set -euo pipefail
cd "$(dirname "$0")"
tools_dir=$(cd ../../tools && pwd)

stage=0 stop_stage=7 size=default seed=1234 ngpu=0 num_nodes=1 cmd=local nj=1 tag="" epochs=""
systems="baseline mowe" train_seed="" system_jobs=auto
train_config=conf/train.yaml decode_config=conf/decode.yaml train_args="" decode_args=""
python=${MOWE_PYTHON:-$(cd ../.. && pwd)/.venv/bin/python}
pretrained_dir=$(cd ../.. && pwd)/pretrained data_dir=""
_options="stage stop_stage size seed train_seed ngpu num_nodes cmd nj system_jobs tag epochs systems
          train_config decode_config train_args decode_args python pretrained_dir data_dir"
. "$tools_dir/parse_options.sh"
. ./cmd.sh
# refuse an unknown corpus size before any stage runs
sizes=$("$python" -c "from mowe.synth.corpus import SIZES; print(' '.join(SIZES))") \
  || { echo "$0: cannot import mowe with $python (run tools/install.sh)" >&2; exit 2; }
case " $sizes " in *" $size "*) ;; *)
  echo "$0: --size $size is not a corpus size (choose one of: $sizes)" >&2; exit 2 ;; esac
known_systems="baseline baseline_ft mowe mowe_indep mowe_dep mowe_dep_dep mowe_pretrained_pool
               baseline_whisper_base mowe_specialist_pool moe_adapter mowe_moe_adapter"
for system in $systems; do
  case " $(echo $known_systems) " in *" $system "*) ;; *)
    echo "$0: unknown system '$system' in --systems (known: $(echo $known_systems))" >&2; exit 2 ;; esac
done

case "$train_seed" in ""|*[!0-9]*) [ -z "$train_seed" ] || {
  echo "$0: --train_seed takes a whole number, not '$train_seed'" >&2; exit 2; } ;; esac
if [ -z "$train_seed" ] || [ "$train_seed" = "$seed" ]; then
  train_seed=$seed; tag=${tag:-${size}_seed${seed}}
else
  tag=${tag:-${size}_seed${seed}_train${train_seed}}
fi
pretrained_dir=$(mkdir -p "$pretrained_dir" && cd "$pretrained_dir" && pwd)
# stage 5 also transcribes the ASR test clips with the base Whisper's own decoder; the
# report sets each system's WER beside it (recipes/stages.sh)
whisper_reference_model=$pretrained_dir/whisper-tiny.en
# ... and every system transcribes sentences in no corpus, spoken by held-out voices
smoke_sentences=$(pwd)/local/smoke_sentences.tsv
data_dir=${data_dir:-data/${size}_seed${seed}}
prepare_command=("$python" -m mowe synth --out "$data_dir/raw" --size "$size" --seed "$seed")
prepare_merge_command=("$python" -m mowe synth --out "$data_dir/raw" --merge_shards "$nj")
epoch_args=()
[ -n "$epochs" ] && epoch_args=(--number_of_epochs="$epochs")
[ "$size" = tiny ] && epoch_args+=(--batch_size=4 --max_new_tokens=12)  # decode.py too: beats conf/decode.yaml
# The free-form corpus: the LLM reads the audio only once the front end has had a CTC
# warm-up (mowe/train/ctc_warmup.py; its effect on ASR: RESULTS.md); --train_args
# "--ctc_warmup_epochs=0" turns it off, and so does a --train_config of your own that
# sets ctc_warmup_epochs (conf/train.yaml's 0 is the default for the other sizes).
if [ "$size" = large ] && [[ "$train_args" != *ctc_warmup_epochs* ]] && \
   { [ "$train_config" = conf/train.yaml ] ||
     ! grep -q "^ctc_warmup_epochs:" "$train_config"; }; then
  epoch_args+=(--ctc_warmup_epochs=6)
fi
# Stage 7 (pack): model-card metadata of the packed models.
pack_args=(--license apache-2.0 --dataset mowe-synthetic-"$size"
           --base_model openai/whisper-tiny.en --base_model HuggingFaceTB/SmolLM2-135M-Instruct)
# The paper-analog system needs Whisper base as well (provisioned only then).
case " $systems " in *" mowe_pretrained_pool "*|*" baseline_whisper_base "*)
  provision_command=("$python" -m mowe provision --out "$pretrained_dir" --models
                     whisper-tiny.en smollm2-135m-instruct whisper-base) ;; esac
# The specialist pool's small encoders, pretrained on corpora of their own (mowe/train/specialists.py;
# kept once made: delete $pretrained_dir/specialists to retrain them).
case " $systems " in *" mowe_specialist_pool "*)
  provision_extra_command=("$python" -m mowe specialists --out "$pretrained_dir/specialists") ;; esac
paper_analog=$(cd ../.. && pwd)/recipes/conf/model/offline_paper_analog.yaml
specialist_pool=$(cd ../.. && pwd)/recipes/conf/model/specialist_pool.yaml
# Sets system_args: the overrides of one system (baseline = the model without MoWE).
system_overrides() {
  system_args=("--seed=$train_seed" "${epoch_args[@]}")
  case "$1" in
    baseline) system_args+=("--spec={mixture: null}") ;;
    baseline_ft) system_args+=("--spec={mixture: null, freeze_base_encoder: False}") ;;
    mowe_indep) system_args+=("--spec={routers: [indep]}") ;;
    mowe_dep) system_args+=("--spec={routers: [dep]}") ;;
    mowe_dep_dep) system_args+=("--spec={routers: [dep, dep]}") ;;
    mowe_pretrained_pool) system_args+=("--overrides_file=$paper_analog") ;;
    baseline_whisper_base) system_args+=(
      "--spec={mixture: null, base_encoder_source: $pretrained_dir/whisper-base}") ;;
    mowe_specialist_pool) system_args+=("--overrides_file=$specialist_pool") ;;
    moe_adapter) system_args+=("--spec={mixture: null, adapter_kind: moe}") ;;
    mowe_moe_adapter) system_args+=("--spec={adapter_kind: moe}") ;;
  esac
}

. ../../recipes/stages.sh
