#!/usr/bin/env bash
# Multi-node training inside a Slurm allocation: one torchrun per node via srun, the
# first node of the allocation as rendezvous host.
#   tools/torchrun_nodes.sh PYTHON GPUS_PER_NODE NUM_NODES script.py args...
set -euo pipefail
python=$1 gpus=$2 nodes=$3; shift 3
if [ -z "${SLURM_JOB_NODELIST:-}" ]; then
  echo "torchrun_nodes.sh: --num_nodes $nodes needs a Slurm allocation (--cmd slurm)" >&2
  exit 2
fi
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
exec srun --nodes "$nodes" --ntasks-per-node 1 "$python" -m torch.distributed.run \
  --nnodes "$nodes" --nproc_per_node "$gpus" --rdzv_id "${SLURM_JOB_ID}" \
  --rdzv_backend c10d --rdzv_endpoint "$head:29500" "$@"
