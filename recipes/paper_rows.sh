#!/usr/bin/env bash
# The paper's configurations as arguments of recipes/train.py (sourced by the run.sh of
# the paper recipes). Sets, for `--row ROW --llm LLM`:
#   mowe_args      overrides of the MoWE system
#   baseline_args  overrides of its no-MoWE baseline (Table III)
#   row_systems    the systems the row trains ("baseline mowe"; Table I rows: "baseline",
#                  the encoder alone with the LLM)
# Rows (what each builds: docs/paper_rows.md, "The rows"):
#   table1_whisper_large, table1_whisper_tiny, table1_hubert, table1_hubert_er
#       (Table I: one encoder alone, no MoWE),
#   table3 (4 Whisper-tiny, indep+dep), table4_indep, table4_dep (pool of 2),
#   table4_indep2, table4_dep2, table4_indep_dep,
#   table5 (2 Whisper-tiny + HuBERT-base + HuBERT-base-ER, prior on HuBERT-base-ER),
#   table6 (table5's pool and prior + SpecAugment + Conv1D adapter).
# LLMs: llama3 (default), zephyr, phi3.
# Every row is scored with AudioBench's judge prompt and parsing rule (when a judge is
# given in score_args): paper_judge_template; --judge_template mowe picks this project's.
paper_conf=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/conf/paper
paper_rows="table1_whisper_large table1_whisper_tiny table1_hubert table1_hubert_er table3
 table4_indep table4_dep table4_indep2 table4_dep2 table4_indep_dep table5 table6"

paper_judge_template=audiobench

paper_row_args() {
  local row=$1 llm=$2 llm_args=()
  case "$llm" in
    llama3) ;;
    zephyr) llm_args=(--overrides_file="$paper_conf/llm_zephyr.yaml") ;;
    phi3) llm_args=(--overrides_file="$paper_conf/llm_phi3.yaml") ;;
    *) echo "unknown --llm $llm (llama3, zephyr, phi3)" >&2; return 2 ;;
  esac
  baseline_args=("${llm_args[@]}" --overrides_file="$paper_conf/baseline.yaml")
  row_systems="baseline mowe"
  case "$row" in
    table1_*) mowe_args=() row_systems=baseline ;;
  esac
  case "$row" in
    table1_whisper_large) ;;
    table1_whisper_tiny|table1_hubert|table1_hubert_er)
      baseline_args+=(--overrides_file="$paper_conf/$row.yaml") ;;
    table3|table4_indep_dep) mowe_args=("${llm_args[@]}") ;;
    table4_indep) mowe_args=("${llm_args[@]}" "--routers=[indep]" --num_weak_encoders=2) ;;
    table4_dep) mowe_args=("${llm_args[@]}" "--routers=[dep]" --num_weak_encoders=2) ;;
    table4_indep2) mowe_args=("${llm_args[@]}" "--routers=[indep, indep]") ;;
    table4_dep2) mowe_args=("${llm_args[@]}" "--routers=[dep, dep]") ;;
    table5) mowe_args=("${llm_args[@]}" --overrides_file="$paper_conf/table5_diverse_pool.yaml") ;;
    table6) mowe_args=("${llm_args[@]}" --overrides_file="$paper_conf/table5_diverse_pool.yaml"
                       --overrides_file="$paper_conf/table6_specaug_conv.yaml")
            baseline_args+=(--overrides_file="$paper_conf/table6_specaug_conv.yaml") ;;
    *) echo "unknown --row $row ($(echo $paper_rows | sed 's/ /, /g'))" >&2; return 2 ;;
  esac
}
