# Job launchers shared by every recipe (ESPnet-style; sourced by egs/<dataset>/cmd.sh):
#   $prep_cmd   [JOB=1:N] LOG command...   CPU jobs: provisioning, data preparation
#   $train_cmd  LOG command...             training (asks for --ngpu GPUs, --num_nodes)
#   $decode_cmd [JOB=1:N] LOG command...   decoding (one GPU per job when --ngpu > 0)
# --cmd local runs them here; --cmd slurm submits them with sbatch, mapping the generic
# options (gpu, mem, num_threads, time, num_nodes, partition) to sbatch flags through
# the recipe's conf/slurm.conf when it has one, else the built-in mapping
# (`python -m mowe launch --print_slurm_conf` prints it: a start for conf/slurm.conf).
launcher="${python:-python} -m mowe launch"
slurm_config=()
[ -f conf/slurm.conf ] && slurm_config=(--config conf/slurm.conf)
case "${cmd:-local}" in
  local) prep_cmd="$launcher --backend local"
         train_cmd="$launcher --backend local"
         decode_cmd="$launcher --backend local" ;;
  slurm) slurm="$launcher --backend slurm ${slurm_config[*]}"
         prep_cmd="$slurm --gpu 0 --time 4:00:00"
         # CPUs per job: conf/slurm.conf's num_threads default (or add --num_threads N)
         train_cmd="$slurm --gpu ${ngpu:-0} --num_nodes ${num_nodes:-1} --time 24:00:00"
         decode_cmd="$slurm --gpu $(( ${ngpu:-0} > 0 ? 1 : 0 )) --time 4:00:00" ;;
  *) echo "cmd.sh: unknown --cmd $cmd (local, slurm)" >&2; exit 2 ;;
esac
