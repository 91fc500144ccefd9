#!/usr/bin/env bash
# ASR-only probe: does a finer audio-token rate let the LLM learn free-form transcription?
set -uo pipefail
WT=/work/asrwt; PY=/work/main/.venv/bin/python
export PYTHONPATH=$WT HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2
FEAT=/work/large/egs/synthetic/data/large_seed1234/features
cd $WT/egs/synthetic
run() {
  local name=$1 spec=$2 out=/work/asrexp/$1
  local args=(conf/train.yaml --output_folder=$out --data_folder=/work/asrexp/data
              --pretrained_dir=/work/main/pretrained --seed=1234 "--spec=$spec"
              --feature_cache=$FEAT --number_of_epochs=1)
  echo "$(date -u +%FT%TZ) $name start $(cd $WT && git rev-parse --short HEAD)"
  local t0=$SECONDS
  $PY $WT/recipes/train.py "${args[@]}" > /work/asrexp/train_$name.log 2>&1 || echo "$name train failed"
  echo "$(date -u +%FT%TZ) $name trained in $((SECONDS-t0)) s"
  t0=$SECONDS
  $PY $WT/recipes/decode.py "${args[@]}" > /work/asrexp/decode_$name.log 2>&1 || echo "$name decode failed"
  echo "$(date -u +%FT%TZ) $name decoded in $((SECONDS-t0)) s"
  $PY -m mowe.scoring score --hyp_file $out/hyps.jsonl --out_dir $out --tasks asr > /work/asrexp/score_$name.log 2>&1
  grep -h "asr\|WER" /work/asrexp/score_$name.log | tail -3
  $PY -m mowe.smoke --model $out --sentences local/smoke_sentences.tsv --out $out/smoke > /work/asrexp/smoke_$name.log 2>&1
  grep -h "^| all" $out/smoke/smoke.md
}
run fpt6 "{mixture: null, num_audio_tokens: 100, frames_per_token: 6}"
run fpt24 "{mixture: null}"
