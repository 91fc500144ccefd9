#!/bin/bash
# Specialist pool with the data-dependent router only (no prior), 3 seeds, 350 steps;
# worktree /work/exp5 = d50c9e1 + run.sh system mowe_specialist_dep. Starts each lane when
# a lane of queue_pretrained.sh has ended.
cd /work/exp5/egs/synthetic
export OMP_NUM_THREADS=1 PYTHONPATH=/work/exp5 MOWE_PYTHON=/work/main/.venv/bin/python
PY=/work/main/.venv/bin/python
T=diag_specialist_dep
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
Q=/work/study_mix/queue_pretrained.log
waitfor() { until grep -q "$1" $Q; do sleep 20; done; }
( waitfor "done baseline_whisper_base seed 2"; run mowe_specialist_dep 1; run mowe_specialist_dep 3 ) &
( waitfor "done baseline_whisper_base seed 3"; run mowe_specialist_dep 2 ) &
wait
echo queue done
