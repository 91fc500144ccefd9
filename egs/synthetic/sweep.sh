#!/usr/bin/env bash
# egs/synthetic/sweep.sh: several systems x several training seeds on one fixed corpus,
# reported with uncertainty (the evidence study: does MoWE help?).
#   ./sweep.sh [--seeds "1 2 3"] [--systems "baseline mowe ..."] [--size study]
#              [--seed N] [--tag NAME] [--cmd local|slurm] [--jobs N] [--nj N] [--ngpu N]
#              [--epochs N] [--reference baseline] [--stage N] [--stop_stage M]
#              [--train_args "--train_llm_dtype=null ..."] [--decode_args "..."]
# --train_args / --decode_args reach every pair's run.sh (training and decoding of every
#   system and seed; e.g. "--train_llm_dtype=null" reruns the study's float32 training).
#   They change results: give such a sweep its own --tag.
# 1. run.sh stages 0-2 once: provision the models, synthesize the corpus (--seed), validate.
# 2. every (system, seed) pair: run.sh stages 3-5 (train, decode, score) with
#    --train_seed SEED in exp/TAG/seedSEED/SYSTEM; each is one $train_cmd and one
#    $decode_cmd job (a Slurm job each with --cmd slurm), up to --jobs pairs at a time
#    (here on CPUs, the cores shared out among them through OMP_NUM_THREADS).
#    Finished pairs are skipped (per-system stage markers), so a rerun resumes the sweep.
# 3. python -m mowe study --allow_missing: exp/TAG/RESULTS.md (mean ± std over
#    seeds, paired bootstrap differences to --reference, routing shares per task,
#    routing_*.png, ASR WER beside the base Whisper's own decoder's); pairs not scored
#    yet are listed, so --stage 6 reports a partial sweep.
set -euo pipefail
cd "$(dirname "$0")"
tools_dir=$(cd ../../tools && pwd)

seeds="1 2 3" size=study seed=1234 tag="" cmd=local jobs=1 nj=1 ngpu=0 epochs=""
systems="baseline baseline_ft mowe mowe_pretrained_pool mowe_indep mowe_dep mowe_dep_dep"
reference=baseline stage=0 stop_stage=6 train_args="" decode_args=""
python=${MOWE_PYTHON:-$(cd ../.. && pwd)/.venv/bin/python}
_options="seeds systems size seed tag cmd jobs nj ngpu epochs reference stage stop_stage python
          train_args decode_args"
. "$tools_dir/parse_options.sh"
for value in $seeds; do
  case "$value" in *[!0-9]*) echo "$0: --seeds takes whole numbers, not '$value'" >&2; exit 2 ;; esac
done
[ -n "$seeds" ] || { echo "$0: --seeds is empty" >&2; exit 2; }
case " $systems " in *" $reference "*) ;; *)
  echo "$0: the reference system '$reference' is not in --systems" >&2; exit 2 ;; esac
[ "$jobs" -ge 1 ] || { echo "$0: --jobs must be at least 1" >&2; exit 2; }

tag=${tag:-sweep_${size}_seed${seed}}
log() { echo "[$(date '+%F %T')] $*"; }
common=(--size "$size" --seed "$seed" --cmd "$cmd" --nj "$nj" --ngpu "$ngpu" --python "$python")
[ -n "$epochs" ] && common+=(--epochs "$epochs")
pair_args=()  # training and decoding options: the pairs' run.sh only (not stages 0-2)
[ -n "$train_args" ] && pair_args+=(--train_args "$train_args")
[ -n "$decode_args" ] && pair_args+=(--decode_args "$decode_args")

# 1. models and corpus, once (every seed trains on the same clean data folder)
if [ "$stage" -le 2 ]; then
  ./run.sh "${common[@]}" --systems "$systems" --tag "$tag/data" --stage "$stage" \
    --stop_stage $((stop_stage < 2 ? stop_stage : 2))
fi

# 2. one (system, seed) pair per background job, at most --jobs at a time
if [ "$stop_stage" -ge 3 ]; then
  first=$((stage > 3 ? stage : 3)) last=$((stop_stage < 5 ? stop_stage : 5))
  mkdir -p "exp/$tag"
  # pairs at once on this machine's CPUs share its cores (as run.sh's --system_jobs does)
  if [ "$cmd" = local ] && [ "$ngpu" -eq 0 ] && [ "$jobs" -gt 1 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
    cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    export OMP_NUM_THREADS=$(( cores / jobs > 0 ? cores / jobs : 1 ))
    log "sweep: $jobs pairs at a time, $OMP_NUM_THREADS CPU thread(s) each"
  fi
  failed=0 running=0
  for train_seed in $seeds; do
    for system in $systems; do
      if [ "$running" -ge "$jobs" ]; then
        wait -n || failed=$((failed + 1))
        running=$((running - 1))
      fi
      log "sweep: $system, seed $train_seed (log: exp/$tag/seed$train_seed.$system.log)"
      ./run.sh "${common[@]}" "${pair_args[@]}" --systems "$system" --train_seed "$train_seed" \
        --tag "$tag/seed$train_seed" --stage "$first" --stop_stage "$last" \
        > "exp/$tag/seed$train_seed.$system.log" 2>&1 &
      running=$((running + 1))
    done
  done
  while [ "$running" -gt 0 ]; do
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
  done
  if [ "$failed" -gt 0 ]; then
    echo "error: $failed (system, seed) pair(s) failed; see exp/$tag/seed*.log (rerun" \
         "this command to resume: finished pairs are skipped)" >&2
    exit 1
  fi
fi

# 3. the study report
if [ "$stop_stage" -ge 6 ]; then
  runs=()
  reference_args=()
  for train_seed in $seeds; do
    runs+=("exp/$tag/seed$train_seed")
    # the Whisper decoder's transcripts (run.sh stage 5): the same for every seed
    whisper_hyps=exp/$tag/seed$train_seed/whisper_decoder/hyps.jsonl
    [ -f "$whisper_hyps" ] && reference_args=(--whisper_reference "$whisper_hyps")
  done
  "$python" -m mowe study --runs "${runs[@]}" --systems $systems \
    --reference "$reference" --out "exp/$tag/RESULTS.md" --allow_missing \
    "${reference_args[@]}" > /dev/null
  log "finished; results: $(pwd)/exp/$tag/RESULTS.md"
fi
