#!/bin/bash
# Device check (issue 15's GPU figure + the synthetic recipe's GPU path), one call.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
t0=$(date +%s); el() { echo "[+$(( $(date +%s)-t0 )) s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch,transformers,peft,speechbrain,mowe;print('torch',torch.__version__,'transformers',transformers.__version__,'peft',peft.__version__,'speechbrain',speechbrain.__version__,torch.cuda.get_device_name())"
  nproc; } 2>&1 | tee $OUT/env.txt
el setup
if [ "${SKIP_PAPER:-0}" != 1 ]; then
  timeout ${PAPER_TIMEOUT:-170} python3 bench/paper_size_step.py --compile --profile $OUT/paper_profile.txt ${PAPER_ARGS:-} 2>&1 | grep -v "Writing model shards" | tee $OUT/paper.log
  el paper done
fi
if [ "${SKIP_RECIPE:-0}" != 1 ]; then
  { python3 .devrun/make_random_pretrained.py .devrun/cfg pretrained
    python3 .devrun/noise_corpus.py .devrun/clean egs/synthetic/data/default_seed1234; } 2>&1 | grep -v "Writing model" | tee $OUT/recipe.log
  d=egs/synthetic/exp/default_seed1234/.done; mkdir -p $d; touch $d/0.provision $d/1.prepare $d/2.validate
  el recipe data ready | tee -a $OUT/recipe.log
  (cd egs/synthetic && MOWE_PYTHON=python3 timeout ${RECIPE_TIMEOUT:-260} bash run.sh --stage 2 --stop_stage 4 --ngpu 1) 2>&1 | grep -v "Writing model" | tee -a $OUT/recipe.log
  el recipe done | tee -a $OUT/recipe.log
  tar czf $OUT/recipe_exp.tgz egs/synthetic/exp/default_seed1234/log egs/synthetic/exp/default_seed1234/*/train_log.txt egs/synthetic/exp/default_seed1234/*/hyps.jsonl egs/synthetic/exp/default_seed1234/*/loss_trace.jsonl 2>/dev/null
fi
el all done
