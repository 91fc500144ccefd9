#!/bin/bash
# baseline_ft, mowe_pretrained_pool, baseline_whisper_base at 3 seeds (350 steps) with the
# clipping fix; worktree /work/exp4 at d50c9e1 (the ablations' training path).
cd /work/exp4/egs/synthetic
export OMP_NUM_THREADS=1 PYTHONPATH=/work/exp4 MOWE_PYTHON=/work/main/.venv/bin/python
PY=/work/main/.venv/bin/python
T=diag_pretrained
mkdir -p exp/$T
score() { $PY -m mowe.scoring score --hyp_file $1/hyps.jsonl --out_dir $1 --train_manifest data/study_seed1234/clean/train.json > /dev/null 2>&1; }
run() {  # system seed
  local s=$(date +%s)
  ./run.sh --size study --seed 1234 --cmd local --nj 1 --ngpu 0 --python $PY \
    --train_args "--train_llm_dtype=null" --systems $1 --train_seed $2 \
    --tag $T/seed$2 --stage 3 --stop_stage 4 > exp/$T/seed$2.$1.log 2>&1
  echo "rc=$?" >> exp/$T/seed$2.$1.log
  score exp/$T/seed$2/$1
  echo "$(date -Is) done $1 seed $2 in $(( $(date +%s) - s )) s"
}
( run baseline_ft 1; run mowe_pretrained_pool 2; run baseline_ft 3; run baseline_whisper_base 2 ) &
( run mowe_pretrained_pool 1; run baseline_ft 2; run mowe_pretrained_pool 3; run baseline_whisper_base 1; run baseline_whisper_base 3 ) &
wait
echo queue done
