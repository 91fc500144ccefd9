#!/usr/bin/env bash
# The shared stage driver of every egs/<dataset>/run.sh (sourced after run.sh has set
# its variables and parsed the options). Logic lives in the Python entry points; this
# file only sequences them, skips finished stages (.done markers) and launches jobs
# through $prep_cmd / $train_cmd / $decode_cmd (recipes/cmd.sh).
#
# Stages: 0 provision pretrained models, 1 prepare data, 2 validate audio (then, as a
#         second step of stage 2 with its own marker 2.features, the base encoder's
#         features of every clip, computed once when the encoder is frozen and not
#         augmented: recipes/extract_features.py; use_features=false turns it off),
#         3 train each system, 4 decode, 5 score, 6 report, 7 pack (a self-contained
#         model folder with a model card per system: exp/<tag>/packed/<system>).
# Variables used: stage stop_stage tag train_config pretrained_dir data_dir ngpu
#                 systems prepare_command (an array), use_features (default true),
#                 feature_dir (default $data_dir/features), feature_dtype (float32 or
#                 float16), score_args (optional array:
#                 extra `python -m mowe score` options, e.g. a judge), pack_args
#                 (optional array: extra `python -m mowe pack` options, e.g. --license,
#                 --dataset, --base_model, --push_to_hub REPO) and the function
#                 system_overrides NAME, which sets the array system_args.
#                 Optional: train_args / decode_args (strings of extra --key=value
#                 arguments of recipes/train.py / recipes/decode.py, quotes respected;
#                 train_args reach decoding too, which rebuilds the trained model) and
#                 decode_config (a YAML of generation settings, recipes/decode.py).
#                 whisper_reference_model (optional: a Whisper folder with its decoder;
#                 stage 5 then also transcribes the ASR test clips with it, marker
#                 5.whisper_reference, and the report sets every system's ASR WER
#                 beside it: how much of the encoder's knowledge reaches the LLM).
#                 smoke_sentences (optional: an ID<TAB>VOICE<TAB>TEXT file of sentences
#                 in no corpus; stage 5 then speaks them and every system transcribes
#                 them, python -m mowe smoke, marker 5.smoke, a table in the report).

recipes_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${python:-python}
last_stage=7
# Refuse an impossible stage range before anything runs (stop_stage past the last
# stage is fine: ESPnet's "--stop_stage 100" means "to the end").
if [ "$stage" -gt "$last_stage" ]; then
  echo "$0: --stage $stage does not exist: stages are 0 provision, 1 prepare, 2 validate," \
       "3 train, 4 decode, 5 score, 6 report, 7 pack" >&2
  exit 2
fi
if [ "$stage" -gt "$stop_stage" ]; then
  echo "$0: --stage $stage is after --stop_stage $stop_stage: nothing would run" >&2
  exit 2
fi
exp_dir=exp/$tag
done_dir=$exp_dir/.done
mkdir -p "$done_dir"

log() { echo "[$(date '+%Y-%m-%d %H:%M:%S')] $*"; }

# run_stage N NAME COMMAND...: run unless outside [stage, stop_stage] or already done.
# Stages that loop over $systems (features, train, decode, score, smoke, pack) list in their marker the
# systems they finished: adding a system to a finished experiment runs them for the new
# system only (an empty marker, from before systems were recorded, counts as all done).
# The report is redone whenever the set of systems changes.
per_system_stages=" features train decode score smoke pack "
run_stage() {
  local number=$1 name=$2; shift 2
  if [ "$number" -lt "$stage" ] || [ "$number" -gt "$stop_stage" ]; then return 0; fi
  local marker=$done_dir/$number.$name
  if [[ "$per_system_stages" == *" $name "* ]]; then
    local todo="" system
    for system in $systems; do
      if [ ! -f "$marker" ] || { [ -s "$marker" ] && ! grep -qx -- "$system" "$marker"; }; then
        todo="$todo $system"
      fi
    done
    if [ -z "$todo" ]; then
      log "stage $number ($name): already done, skipping (systems: $systems; rm $marker to redo)"
      return 0
    fi
    log "stage $number ($name): start (systems:$todo)"
    local start=$SECONDS all_systems=$systems
    systems=${todo# }
    stage_marker=$marker  # for_each_system records each system as it finishes
    "$@"
    stage_marker=""
    systems=$all_systems
    for system in $todo; do
      grep -qx -- "$system" "$marker" 2>/dev/null || echo "$system" >> "$marker"
    done
    log "stage $number ($name): done in $((SECONDS - start)) s"
    record_stage_time "$number" "$name" "$start"
    return 0
  fi
  if [ -f "$marker" ] && { [ "$name" != report ] || [ "$(cat "$marker")" = "$systems" ]; }; then
    log "stage $number ($name): already done, skipping (rm $marker to redo)"
    return 0
  fi
  log "stage $number ($name): start"
  local start=$SECONDS
  "$@"
  if [ "$name" = report ]; then echo "$systems" > "$marker"; else touch "$marker"; fi
  log "stage $number ($name): done in $((SECONDS - start)) s"
  record_stage_time "$number" "$name" "$start"
}
# wall time per stage, for the provenance section of RESULTS.md (stage 6)
record_stage_time() {
  mkdir -p "$exp_dir/log"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$((SECONDS - $3))" "$(date -u +%FT%TZ)" \
    >>"$exp_dir/log/stage_times.tsv"
}

nj=${nj:-1}
# --system_jobs N: the per-system stages (train, decode, score, smoke, pack) run N
# systems' jobs at once. auto: every system with --cmd slurm (the cluster places them);
# one at a time with a GPU here (--ngpu >= 1); on this machine's CPUs, one job per core
# up to the number of systems, the cores shared out through OMP_NUM_THREADS (unless it is
# set already). On 2 cores, two 1-thread trainings side by side take less time than the
# two one after the other with 2 threads (bench/concurrent_systems.py, figures in
# bench/RESULTS.md; docs/performance.md): small matrices and the Python between them
# leave a second thread idle much of the time.
system_jobs=${system_jobs:-auto}
if [ "$system_jobs" != auto ]; then
  if [[ ! "$system_jobs" =~ ^[0-9]+$ ]] || [ $((10#$system_jobs)) -lt 1 ]; then
    echo "$0: --system_jobs takes auto or a whole number >= 1, not '$system_jobs'" >&2
    exit 2
  fi
  system_jobs=$((10#$system_jobs))  # (08 is eight, not a bad octal number)
fi
stage_marker=""
# stop_jobs PID...: SIGTERM to the commands each job's subshell runs (the launcher passes
# it on to its job and waits for it; training checkpoints on it), not to the subshells,
# which end when their commands have. child_pids: pgrep, or /proc where procps is missing.
child_pids() { pgrep -P "$1" 2>/dev/null || cat /proc/"$1"/task/*/children 2>/dev/null || true; }
stop_jobs() {
  local pid
  for pid in "$@"; do kill -TERM $(child_pids "$pid") 2>/dev/null || true; done
}
# for_each_system FUNCTION: FUNCTION SYSTEM for every system of $systems, each in its
# own subshell, $system_jobs at a time. A system that finishes is added to the stage's
# marker at once, so when another one fails its finished work is kept; the stage then
# fails naming the systems that failed (a rerun redoes only those). INT/TERM are passed
# on to the running jobs (training checkpoints on SIGTERM). With the cores shared out,
# once every system has started, each job that ends leaves its threads to the jobs still
# running: the new share goes to $MOWE_THREAD_SHARE_FILE, which training and decoding
# read between batches (mowe/train/threads.py).
for_each_system() {
  local function=$1 system jobs=$system_jobs threads="" count started=0 failed=""
  local pids=() names=() cores share_file="" share
  count=$(echo $systems | wc -w)
  cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  if [ "$jobs" = auto ]; then
    if [ "${cmd:-local}" != local ]; then jobs=$count
    elif [ "$ngpu" -ge 1 ]; then jobs=1
    else jobs=$(( count < cores ? count : cores )); fi
  fi
  jobs=$(( jobs < count ? jobs : count ))
  if [ "${cmd:-local}" = local ] && [ "$ngpu" -eq 0 ] && [ "$jobs" -gt 1 ] \
     && [ -z "${OMP_NUM_THREADS:-}" ]; then
    threads=$(( cores / jobs > 0 ? cores / jobs : 1 ))
    share_file=$(pwd)/$exp_dir/log/.thread_share.$BASHPID
    rm -f "$share_file"
    log "  $jobs systems at a time, $threads CPU thread(s) each"
  fi
  # finish_one: wait until a running job ends (polled: `wait -n -p` needs bash 5.1),
  # record it, and give its threads to the others once no system is left to start
  finish_one() {
    local index
    while true; do
      for index in "${!pids[@]}"; do
        kill -0 "${pids[$index]}" 2>/dev/null && continue
        if wait "${pids[$index]}"; then
          [ -z "$stage_marker" ] || echo "${names[$index]}" >> "$stage_marker"
        else
          failed="$failed ${names[$index]}"
        fi
        unset "pids[$index]" "names[$index]"
        pids=("${pids[@]}"); names=("${names[@]}")
        if [ -n "$share_file" ] && [ "$started" -eq "$count" ] && [ "${#pids[@]}" -gt 0 ]; then
          share=$(( cores / ${#pids[@]} > 0 ? cores / ${#pids[@]} : 1 ))
          echo "$share" > "$share_file.new" && mv "$share_file.new" "$share_file"
          log "  ${names[*]} still running: $share CPU thread(s) each from now on"
        fi
        return 0
      done
      sleep 0.2
    done
  }
  trap 'stop_jobs "${pids[@]}"; wait; exit 143' INT TERM
  for system in $systems; do
    [ "${#pids[@]}" -lt "$jobs" ] || finish_one
    # a background subshell: `set -e` holds inside it (not so in an `if` condition)
    ( if [ -n "$threads" ]; then
        export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads \
               MOWE_THREAD_SHARE_FILE=$share_file
      fi
      "$function" "$system" ) &
    pids+=($!); names+=("$system"); started=$((started + 1))
  done
  while [ "${#pids[@]}" -gt 0 ]; do finish_one; done
  trap - INT TERM
  [ -z "$share_file" ] || rm -f "$share_file"
  if [ -n "$failed" ]; then
    echo "error: ${function%_system} failed for:$failed (systems that finished are recorded;" \
         "rerun the same command to redo only the failed ones)" >&2
    return 1
  fi
}
num_nodes=${num_nodes:-1}
prep_cmd=${prep_cmd:-$train_cmd}
[ -n "${score_args+x}" ] || score_args=()
[ -n "${pack_args+x}" ] || pack_args=()
# --train_args / --decode_args "--key=value ..." as argument arrays (quotes respected).
split_args() { [ -z "$1" ] || xargs -r printf '%s\n' <<<"$1"; }
mapfile -t train_extra < <(split_args "${train_args:-}")
mapfile -t decode_extra < <(split_args "${decode_args:-}")
[ -z "${decode_config:-}" ] || decode_extra=(--decode_config="$decode_config" "${decode_extra[@]}")
# The exact command (provenance: RESULTS.md) and the command line with every option's
# value (the model card).
mkdir -p "$exp_dir/log"
echo "$(date -u +%FT%TZ) [egs/$(basename "$(pwd)")] ${mowe_command_line:-$0}" \
  >>"$exp_dir/log/commands.txt"
recipe_command="$(basename "$(dirname "$(pwd)")")/$(basename "$(pwd)")/$(basename "$0")"
for _option in ${_options:-}; do
  [ "$_option" = python ] || [ -z "${!_option}" ] || recipe_command+=" --$_option ${!_option}"
done
# Training processes: one; torchrun with --ngpu processes on one node; or, over several
# Slurm nodes, tools/torchrun_nodes.sh (srun + torchrun). SpeechBrain's DDP does the rest
# (each process takes the GPU of its LOCAL_RANK, so no --device is given then);
# recipes/train.py keeps the global batch by adjusting gradient accumulation.
decode_device_args=()
[ "$ngpu" -ge 1 ] && decode_device_args=(--device=cuda:0 --precision=bf16)
device_args=("${decode_device_args[@]}")
train_launcher=($python)
if [ "$num_nodes" -gt 1 ]; then
  train_launcher=("$tools_dir/torchrun_nodes.sh" "$python" "$ngpu" "$num_nodes")
  device_args=(--precision=bf16 --distributed_backend=nccl)
elif [ "$ngpu" -gt 1 ]; then
  train_launcher=($python -m torch.distributed.run --standalone --nproc_per_node="$ngpu")
  device_args=(--precision=bf16 --distributed_backend=nccl)
fi

# Recipes on hub models set provision_command=() (nothing to provision offline).
[ -n "${provision_command+x}" ] || provision_command=($python -m mowe provision --out "${pretrained_dir:-pretrained}")
# A recipe may add a step that makes models of its own from the provisioned ones
# (provision_extra_command, e.g. pretraining specialist weak encoders); it runs after.
provision() {
  if [ ${#provision_command[@]} -eq 0 ]; then log "  nothing to provision"
  else $prep_cmd "$exp_dir/log/provision.log" "${provision_command[@]}"; fi
  if [ -n "${provision_extra_command+x}" ] && [ ${#provision_extra_command[@]} -gt 0 ]; then
    $prep_cmd "$exp_dir/log/provision_extra.log" "${provision_extra_command[@]}"
  fi
}
[ -n "${validate_manifests+x}" ] || validate_manifests=("$data_dir"/raw/{train,valid,test}.json)
[ -n "${validate_args+x}" ] || validate_args=()  # e.g. (--trim_seconds 30): paper recipes
pretrained_args=()
[ -n "${pretrained_dir:-}" ] && pretrained_args=(--pretrained_dir="$pretrained_dir")
# With nj > 1 and a preparer that shards (prepare_merge_command set), preparation is a
# job array of nj jobs, then a merge.
prepare() {
  if [ "$nj" -gt 1 ] && [ -n "${prepare_merge_command+x}" ]; then
    $prep_cmd JOB=1:"$nj" "$exp_dir/log/prepare.JOB.log" "${prepare_command[@]}" --shard JOB/"$nj"
    $prep_cmd "$exp_dir/log/prepare_merge.log" "${prepare_merge_command[@]}"
  else
    $prep_cmd "$exp_dir/log/prepare.log" "${prepare_command[@]}"
  fi
}
# The recipe's task names (conf/train.yaml's tasks:) decide which entries are kept, as
# in training: another task's entries are skipped here, with a count, not later.
validate() {
  local tasks_args=()
  [ -n "${train_config:-}" ] && [ -f "$train_config" ] && tasks_args=(--tasks_from "$train_config")
  $prep_cmd "$exp_dir/log/validate.log" $python "$recipes_dir/validate_data.py" \
    --manifests "${validate_manifests[@]}" --out_dir "$data_dir/clean" "${tasks_args[@]}" \
    "${validate_args[@]}"
  grep -h "kept" "$exp_dir/log/validate.log" | sed 's/^/  /'
}
# Features (stage 2, second step): per system (systems sharing a base encoder share its
# features: the folder is named by the encoder's fingerprint), a job array of nj jobs on
# the decode launcher (a GPU per job when --ngpu > 0). Each job skips clips already
# written and shards already finished; an encoder that is trainable or augmented is
# skipped with a log line.
use_features=${use_features:-true}
feature_dir=${feature_dir:-$data_dir/features}
feature_dtype=${feature_dtype:-float32}  # float16 halves the disk (loss changes ~1e-6)
feature_args=()
if [ "$use_features" = true ]; then feature_args=(--feature_cache="$feature_dir"); fi
extract_features() {
  for system in $systems; do
    system_overrides "$system"
    $decode_cmd JOB=1:"$nj" "$exp_dir/log/features_$system.JOB.log" $python \
      "$recipes_dir/extract_features.py" "$train_config" --output_folder="$exp_dir/$system" \
      --data_folder="$data_dir/clean" "${pretrained_args[@]}" "${decode_device_args[@]}" \
      "${system_args[@]}" --feature_cache="$feature_dir" --feature_dtype="$feature_dtype" \
      --shard JOB/"$nj"
    grep -h "features: " "$exp_dir/log/features_$system".*.log | sed "s/^.*features: /  $system: /" || true
  done
}
train_system() {
  system_overrides "$1"
  $train_cmd "$exp_dir/log/train_$1.log" "${train_launcher[@]}" "$recipes_dir/train.py" "$train_config" \
    --output_folder="$exp_dir/$1" --data_folder="$data_dir/clean" \
    "${pretrained_args[@]}" "${device_args[@]}" "${system_args[@]}" "${feature_args[@]}" \
    "${train_extra[@]}"
}
decode_system() {
  local system=$1 args
  system_overrides "$system"
  args=("$train_config" --output_folder="$exp_dir/$system" --data_folder="$data_dir/clean"
        "${pretrained_args[@]}" "${system_args[@]}" "${feature_args[@]}" "${train_extra[@]}")
  args+=("${decode_device_args[@]}" "${decode_extra[@]}")
  if [ "$nj" -gt 1 ]; then  # a job array over nj shards of the test set, then a merge
    $decode_cmd JOB=1:"$nj" "$exp_dir/log/decode_$system.JOB.log" $python \
      "$recipes_dir/decode.py" "${args[@]}" --shard JOB/"$nj"
    $prep_cmd "$exp_dir/log/decode_${system}_merge.log" $python "$recipes_dir/decode.py" \
      --merge_shards "$nj" --hyp_file "$exp_dir/$system/hyps.jsonl" \
      --test_manifest "$data_dir/clean/test.json"
  else
    $decode_cmd "$exp_dir/log/decode_$system.log" $python "$recipes_dir/decode.py" "${args[@]}"
  fi
}
score_system() {
  local system=$1 log=$exp_dir/log/score_$1.log
  if ! $python -m mowe score --hyp_file "$exp_dir/$system/hyps.jsonl" \
      --out_dir "$exp_dir/$system" --train_manifest "$data_dir/clean/train.json" \
      "${score_args[@]}" >"$log" 2>&1; then
    echo "error: scoring $system failed; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    return 1
  fi
  grep "(trivial" "$log" | sed "s/^/  $system: /"
}
whisper_reference_model=${whisper_reference_model:-}
whisper_reference() {
  local out=$exp_dir/whisper_decoder device=cpu
  [ "$ngpu" -ge 1 ] && device=cuda
  $decode_cmd "$exp_dir/log/whisper_reference.log" $python -m mowe whisper-reference \
    --manifest "$data_dir/clean/test.json" --model "$whisper_reference_model" \
    --hyp_file "$out/hyps.jsonl" --device "$device"
  grep -h "^Whisper decoder (" "$exp_dir/log/whisper_reference.log" | sed 's/^/  /' || true
  if ! $python -m mowe score --hyp_file "$out/hyps.jsonl" --out_dir "$out" \
      --tasks asr >"$exp_dir/log/score_whisper_decoder.log" 2>&1; then
    echo "error: scoring the Whisper decoder failed; see $exp_dir/log/score_whisper_decoder.log" >&2
    return 1
  fi
}
smoke_sentences=${smoke_sentences:-}
smoke_system() {
  local system=$1 device=cpu whisper_args=()
  [ "$ngpu" -ge 1 ] && device=cuda
  [ -n "$whisper_reference_model" ] && whisper_args=(--whisper_model "$whisper_reference_model")
  $decode_cmd "$exp_dir/log/smoke_$system.log" $python -m mowe smoke \
    --model "$exp_dir/$system" --sentences "$smoke_sentences" \
    --out "$exp_dir/$system/smoke" --device "$device" "${whisper_args[@]}"
  log "  $system: $(grep -h '^| all |' "$exp_dir/$system/smoke/smoke.md" || true)"
}
report() { $python "$recipes_dir/report.py" --exp "$exp_dir" --systems $systems; }
pack_system() {
  $prep_cmd "$exp_dir/log/pack_$1.log" $python -m mowe pack \
    --exp_dir "$exp_dir/$1" --out "$exp_dir/packed/$1" --overwrite \
    --routing_plot "$exp_dir/routing.png" --train_log "$exp_dir/log/train_$1.log" \
    --recipe_command "$recipe_command" "${pack_args[@]}"
  log "  $1: $(pwd)/$exp_dir/packed/$1"
}

run_stage 0 provision provision
run_stage 1 prepare prepare
run_stage 2 validate validate
if [ "$use_features" = true ]; then run_stage 2 features extract_features; fi
run_stage 3 train for_each_system train_system
# Other decoding options than the last decode's (--decode_args, the --decode_config file):
# decode, score and report again (recipes/decode.py moves the old hypotheses aside to
# hyps.jsonl.stale); the options of the last decode are in $done_dir/4.decode.options
# (a decode from before that file existed is taken to have used the current ones).
decode_options="${decode_args:-}|${decode_config:-}|$( [ ! -f "${decode_config:-}" ] || cat "$decode_config")"
if [ 4 -ge "$stage" ] && [ 4 -le "$stop_stage" ] && [ -f "$done_dir/4.decode" ] && \
   [ -f "$done_dir/4.decode.options" ] && \
   [ "$(cat "$done_dir/4.decode.options")" != "$decode_options" ]; then
  log "decoding options changed since the last decode: decoding, scoring and reporting again"
  rm -f "$done_dir"/4.decode "$done_dir"/5.score "$done_dir"/6.report "$done_dir"/7.pack
fi
run_stage 4 decode for_each_system decode_system
[ ! -f "$done_dir/4.decode" ] || printf '%s' "$decode_options" > "$done_dir/4.decode.options"
run_stage 5 score for_each_system score_system
if [ -n "$whisper_reference_model" ]; then run_stage 5 whisper_reference whisper_reference; fi
if [ -n "$smoke_sentences" ]; then run_stage 5 smoke for_each_system smoke_system; fi
run_stage 6 report report
run_stage 7 pack for_each_system pack_system
# How to use the last system: its packed folder (stage 7) or, before that, its
# experiment folder (the inference API loads both).
last_system=$(echo $systems | awk '{print $NF}')
model_dir=$exp_dir/packed/$last_system
[ -d "$model_dir" ] || model_dir=$exp_dir/$last_system
if [ -f "$exp_dir/RESULTS.md" ]; then
  log "finished; results: $(pwd)/$exp_dir/RESULTS.md"
else
  log "finished stages $stage-$((stop_stage < last_stage ? stop_stage : last_stage));" \
      "$exp_dir/RESULTS.md is written by stage 6 (report)"
fi
# (a trained checkpoint, not just the save/ folder that stage 2's features step makes)
if compgen -G "$model_dir/save/CKPT*" > /dev/null || [ -d "$exp_dir/packed/$last_system" ]; then
  model_dir=$(cd "$model_dir" && pwd)
  log "ask the $last_system model about audio ($model_dir):"
  echo "  $python -m mowe infer --model $model_dir CLIP.wav --instruction \"Transcribe the speech.\""
  echo "  $python -m mowe serve --model $model_dir --port 8000   # OpenAI-compatible API: http://127.0.0.1:8000/v1"
  echo "  $python -m mowe web --model $model_dir                # browser demo (pip install -e .[demo])"
fi
