#!/usr/bin/env bash
# ASR-only probe: does a finer audio-token rate let the LLM learn free-form transcription?
# The run recorded beside this script used a worktree of the commit named in RESULTS.md
# and the ASR clips of the --size large corpus. Set the folders for your machine:
#   WT    a checkout of the toolkit (default: this repository)
#   PY    its Python (default: $WT/.venv/bin/python)
#   DATA  a folder with {train,valid,test}.json of ASR clips
#   FEAT  the base-encoder feature cache of that corpus (recipes/extract_features.py)
#   OUT   where the two experiments go
# The scoring and smoke commands are written with today's CLI (`mowe score`, `mowe smoke`).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
WT=${WT:-$(cd "$here/../../../.." && pwd)}
PY=${PY:-$WT/.venv/bin/python}
DATA=${DATA:?set DATA to a folder of ASR manifests}
FEAT=${FEAT:?set FEAT to the corpus feature cache}
OUT=${OUT:-$PWD/asr_only_probe}
export PYTHONPATH=$WT HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2
mkdir -p "$OUT"
cd "$WT/egs/synthetic"
run() {
  local name=$1 spec=$2 out=$OUT/$1
  local args=(conf/train.yaml --output_folder=$out --data_folder=$DATA
              --pretrained_dir=$WT/pretrained --seed=1234 "--spec=$spec"
              --feature_cache=$FEAT --number_of_epochs=1)
  echo "$(date -u +%FT%TZ) $name start $(cd "$WT" && git rev-parse --short HEAD)"
  local t0=$SECONDS
  "$PY" "$WT/recipes/train.py" "${args[@]}" > "$OUT/train_$name.log" 2>&1 || echo "$name train failed"
  echo "$(date -u +%FT%TZ) $name trained in $((SECONDS-t0)) s"
  t0=$SECONDS
  "$PY" "$WT/recipes/decode.py" "${args[@]}" > "$OUT/decode_$name.log" 2>&1 || echo "$name decode failed"
  echo "$(date -u +%FT%TZ) $name decoded in $((SECONDS-t0)) s"
  "$PY" -m mowe score --hyp_file "$out/hyps.jsonl" --out_dir "$out" --tasks asr > "$OUT/score_$name.log" 2>&1
  grep -h "asr\|WER" "$OUT/score_$name.log" | tail -3
  "$PY" -m mowe smoke --model "$out" --sentences local/smoke_sentences.tsv --out "$out/smoke" > "$OUT/smoke_$name.log" 2>&1
  grep -h "^| all" "$out/smoke/smoke.md"
}
run fpt6 "{mixture: null, num_audio_tokens: 100, frames_per_token: 6}"
run fpt24 "{mixture: null}"
