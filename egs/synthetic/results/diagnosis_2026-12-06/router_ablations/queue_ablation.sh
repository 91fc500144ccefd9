#!/bin/bash
# Table IV router ablations at 3 seeds (350 steps), worktree /work/exp4 at d50c9e1
# (3230a76 + epoch-checkpoint patch + clipping fix; random init, as the study's mowe).
cd /work/exp4/egs/synthetic
export OMP_NUM_THREADS=1 PYTHONPATH=/work/exp4 MOWE_PYTHON=/work/main/.venv/bin/python
PY=/work/main/.venv/bin/python
mkdir -p exp/diag_ablation
score() { $PY -m mowe.scoring score --hyp_file $1/hyps.jsonl --out_dir $1 --train_manifest data/study_seed1234/clean/train.json > /dev/null 2>&1; }
run() {  # system seed
  ./run.sh --size study --seed 1234 --cmd local --nj 1 --ngpu 0 --python $PY \
    --train_args "--train_llm_dtype=null" --systems $1 --train_seed $2 \
    --tag diag_ablation/seed$2 --stage 3 --stop_stage 4 > exp/diag_ablation/seed$2.$1.log 2>&1
  score exp/diag_ablation/seed$2/$1
  echo "$(date -Is) done $1 seed $2"
}
wpid() { while kill -0 $1 2>/dev/null; do sleep 10; done; }
( run mowe_dep 1; run mowe_dep 3; run mowe_dep_dep 2; run mowe_indep 1; run mowe_indep 3 ) &
( wpid 31255; PYTHONPATH=/work/exp3 score /work/exp3/egs/synthetic/exp/diag_zero/seed3/mowe; echo "$(date -Is) scored zero seed3"
  run mowe_dep 2; run mowe_dep_dep 1; run mowe_dep_dep 3; run mowe_indep 2 ) &
wait
echo queue done
