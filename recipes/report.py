#!/usr/bin/env python3
"""Write RESULTS.md (a Table III-like comparison) and the routing plot of an experiment.

Usage: python recipes/report.py --exp exp/TAG --systems baseline mowe

Reads ``exp/TAG/<system>/scores.json`` and ``exp/TAG/<system>/hyps.jsonl``; writes
``exp/TAG/RESULTS.md`` and ``exp/TAG/routing.png`` (share of each task's test clips the
data-dependent router sends to each weak encoder, as in the paper's Fig. 2; one
``routing_<system>.png`` per further MoWE system). For a system with the MoE adapter,
``<system>/expert_usage_valid.json`` (written in training) gives
``exp/TAG/expert_usage_<system>.png``: the share of each task's audio tokens each expert
received on the validation set. RESULTS.md ends with the run's provenance
(``mowe.recipe.provenance``: git commit and dirty flag, the run.sh commands, machine, wall time
per stage, library versions).
"""

import argparse
import json
import os
import sys

from mowe.utils.atomic import OutputPathError, write_text_atomic
from mowe.recipe.provenance import provenance_lines
from mowe.scoring.report import (WHISPER_RATIO_TARGET, comparison_table,
                                 whisper_reference_table)
from mowe.scoring.routing_shares import plot_routing, routing_shares
from mowe.inference.smoke_check import smoke_table



def expert_usage_shares(path):
    """task -> {expert: share of its tokens} from an ``expert_usage_valid.json``."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        counts = json.load(handle)
    return {task: {int(e): n / max(1, sum(experts.values())) for e, n in experts.items()}
            for task, experts in sorted(counts.items())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", required=True, help="experiment folder")
    parser.add_argument("--systems", nargs="+", default=["baseline", "mowe"])
    args = parser.parse_args(argv)
    scores = {}
    for system in args.systems:
        path = os.path.join(args.exp, system, "scores.json")
        if not os.path.isfile(path):
            sys.exit(f"error: {path} missing: run the scoring stage first")
        with open(path, encoding="utf-8") as handle:
            scores[system] = json.load(handle)
    tasks = sorted({t for s in scores.values() for t in s})
    first = scores[args.systems[0]]
    lines = ["# Results", "", f"Experiment `{args.exp}`; test clips per task: " +
             ", ".join(f"{t.upper()} {first[t]['count']}" for t in tasks), "",
             comparison_table(scores).rstrip("\n"), "",
             "Trivial answerer: the most common training answer for every clip "
             "(majority label for ER and AQA), the empty transcript for ASR. Metrics: "
             "`python -m mowe.scoring` (AudioBench-normalised WER, NLTK METEOR with "
             "AudioBench's parameters; every metric per system in `<system>/scores.md`)."]
    first_routed = True
    for system in args.systems:
        shares = routing_shares(os.path.join(args.exp, system, "hyps.jsonl"))
        if shares:
            name = "routing.png" if first_routed else f"routing_{system}.png"
            first_routed = False
            png = os.path.join(args.exp, name)
            plot_routing(shares, png)
            lines += ["", f"![routing]({os.path.basename(png)})", "",
                      f"Data-dependent routing of `{system}` on the test sets: " + "; ".join(
                          f"{task.upper()} " + ", ".join(f"E{e} {100 * s:.0f}%"
                                                         for e, s in share.items())
                          for task, share in shares.items())]
        usage = expert_usage_shares(os.path.join(args.exp, system, "expert_usage_valid.json"))
        if usage:
            png = os.path.join(args.exp, f"expert_usage_{system}.png")
            plot_routing(usage, png, title=f"MoE adapter of {system}: tokens per expert",
                         label="expert", ylabel="share of validation tokens")
            lines += ["", f"![expert usage]({os.path.basename(png)})", "",
                      f"MoE-adapter experts of `{system}` (validation tokens): " + "; ".join(
                          f"{task.upper()} " + ", ".join(f"X{e} {100 * s:.0f}%"
                                                         for e, s in share.items())
                          for task, share in usage.items())]
    reference = os.path.join(args.exp, "whisper_decoder", "hyps.jsonl")
    if os.path.isfile(reference):
        lines += ["", "## ASR: the AudioLLM against its own Whisper's decoder", "",
                  "The base encoder's Whisper, decoding with its own decoder (stage 5, "
                  "`python -m mowe whisper-reference`), on the same ASR test clips: how much "
                  "of what the encoder knows reaches the LLM. Ratio = system WER / Whisper "
                  "WER (1.0: the LLM gets everything the encoder knows; the target on "
                  "free-form speech by held-out voices, `--size large`, is "
                  f"{WHISPER_RATIO_TARGET:g} or less).", "",
                  whisper_reference_table(reference, {
                      system: os.path.join(args.exp, system, "hyps.jsonl")
                      for system in args.systems}).rstrip("\n")]
    smoke_rows = {}
    for system in args.systems:
        path = os.path.join(args.exp, system, "smoke", "smoke.jsonl")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                smoke_rows[system] = [json.loads(line) for line in handle if line.strip()]
    if smoke_rows:
        lines += ["", "## Sentences in no corpus (smoke check)", "",
                  "Sentences of `egs/synthetic/local/smoke_sentences.tsv`, spoken by voices "
                  "held out of training and transcribed by each system as `python -m "
                  "mowe infer` would (stage 5, `python -m mowe smoke`); transcript (WER).", "",
                  smoke_table(smoke_rows).rstrip("\n")]
    lines += [""] + provenance_lines(args.exp)
    results = os.path.join(args.exp, "RESULTS.md")
    try:
        write_text_atomic(results, "\n".join(lines) + "\n")
    except OutputPathError as error:
        sys.exit(f"error: {error}")
    print("\n".join(lines))
    print(f"\nRESULTS: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
