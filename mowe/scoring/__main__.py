"""Scoring command line: ``python -m mowe.scoring {score,aggregate,study} --help``.

score      per-task metrics of one hypothesis file (JSON lines: id, task, instruction,
           hyp, ref) -> OUT/scores.json, OUT/scores.md, OUT/items.jsonl; optional judge.
aggregate  merge several experiments' scores.json into one markdown RESULTS table.
study      several seeds of several systems: mean ± std, differences to a reference
           system with two-level (seeds, then test clips) paired bootstrap intervals,
           routing shares per task (egs/synthetic/sweep.sh).

Examples
--------
python -m mowe score --hyp_file exp/x/mowe/hyps.jsonl --out_dir exp/x/mowe
python -m mowe score --hyp_file H.jsonl --out_dir S --judge openai \\
    --judge_url http://localhost:8000/v1 --judge_model meta-llama/Meta-Llama-3-70B-Instruct
python -m mowe aggregate exp/x/baseline exp/x/mowe --out exp/x/RESULTS_scores.md
python -m mowe study --runs exp/s/seed1 exp/s/seed2 exp/s/seed3 --systems baseline mowe \\
    --reference baseline --out exp/s/RESULTS.md
"""

import argparse
import json
import logging
import os
import sys

from mowe.utils.atomic import OutputPathError, check_writable, write_text_atomic
from mowe.scoring.task_metrics import (HypothesisFileError, read_hypotheses, score_rows,
                                warn_unknown_tasks)

OUTPUT_NAMES = ("scores.json", "items.jsonl", "scores.md")


def _prepare_out_dir(out_dir, names):
    """Create ``out_dir`` and check its output files can be written, before scoring.

    Raises
    ------
    SystemExit
        One line naming the path that cannot be written.
    """
    try:
        os.makedirs(out_dir, exist_ok=True)
        for name in names:
            check_writable(os.path.join(out_dir, name))
    except OutputPathError as error:
        raise SystemExit(f"error: {error}")
    except OSError as error:
        raise SystemExit(f"error: cannot create output folder {out_dir}: "
                         f"{error.strerror or error}")


def _write_outputs(files):
    """Write ``{path: text}`` atomically; an unwritable path exits with one line."""
    try:
        for path, text in files.items():
            write_text_atomic(path, text)
    except OutputPathError as error:
        raise SystemExit(f"error: {error}")


def _train_answers(path):
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"error: cannot read training manifest {path}: {error}")
    out = {}
    for entry in manifest.values():
        if isinstance(entry, dict) and "task" in entry and "answer" in entry:
            out.setdefault(str(entry["task"]).lower(), []).append(entry["answer"])
    return out


def build_judge(args):
    """The judge backend the options ask for, or None."""
    from mowe.scoring import judge

    if args.judge == "none":
        return None
    if args.judge == "hf":
        if not args.judge_model:
            raise SystemExit("error: --judge hf needs --judge_model DIR (a local model "
                             "folder, e.g. pretrained/smollm2-135m-instruct)")
        return judge.HFJudge(args.judge_model, max_new_tokens=args.judge_max_tokens)
    if not (args.judge_url and args.judge_model):
        raise SystemExit("error: --judge openai needs --judge_url and --judge_model")
    return judge.OpenAIJudge(args.judge_url, args.judge_model, endpoint=args.judge_endpoint,
                             timeout=args.judge_timeout, retries=args.judge_retries,
                             concurrency=args.judge_concurrency,
                             max_tokens=args.judge_max_tokens)


def cmd_score(args):
    from mowe.scoring import judge as judging
    from mowe.scoring.report import task_table

    try:
        rows = read_hypotheses(args.hyp_file)
    except HypothesisFileError as error:
        raise SystemExit(f"error: {error}")
    if args.tasks:
        rows = [r for r in rows if r["task"] in set(args.tasks)]
        if not rows:
            raise SystemExit(f"error: no hypotheses for task(s) {', '.join(args.tasks)}")
    unknown = warn_unknown_tasks(rows, args.hyp_file)
    try:
        template = judging.load_template(args.judge_template) if args.judge != "none" else None
        _, parse = judging.template_parser(args.judge_template, args.judge_parse)
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {error}")
    _prepare_out_dir(args.out_dir, OUTPUT_NAMES + (("judge_cache.jsonl",)
                                                   if args.judge != "none" else ()))
    backend = build_judge(args)
    cache = judging.JudgeCache(os.path.join(args.out_dir, "judge_cache.jsonl")) \
        if backend else None
    scores, items = score_rows(rows, _train_answers(args.train_manifest),
                               java_meteor=not args.no_java_meteor, judge=backend,
                               judge_template=template, judge_cache=cache, judge_parse=parse,
                               judge_template_name=args.judge_template or "mowe")
    _write_outputs({
        os.path.join(args.out_dir, "scores.json"): json.dumps(scores, indent=2),
        os.path.join(args.out_dir, "items.jsonl"): "".join(json.dumps(i) + "\n"
                                                           for i in items),
        os.path.join(args.out_dir, "scores.md"): task_table(scores)})
    for task, entry in scores.items():
        metric = entry["primary"]
        print(f"{task:4s} {metric} {entry[metric]:.4f} (trivial "
              f"{entry['trivial'][metric]:.4f}, n={entry['count']})"
              + (f" judge {entry['judge_score_failures_as_zero']:.2f}/5 "
                 f"({entry['judge_parse_failures']} parse failures)" if "judge" in entry else "")
              + (" [unknown task: generic SQuAD metrics]" if task in unknown else ""))
    print(f"wrote {os.path.join(args.out_dir, 'scores.json')}")
    return 0


def cmd_aggregate(args):
    from mowe.scoring.report import comparison_table, load_scores

    names = args.names or [os.path.basename(os.path.normpath(p)) for p in args.experiments]
    if len(names) != len(args.experiments):
        raise SystemExit("error: --names must give one name per experiment")
    try:
        named = {name: load_scores(path) for name, path in zip(names, args.experiments)}
    except (FileNotFoundError, json.JSONDecodeError) as error:
        raise SystemExit(f"error: {error}")
    table = comparison_table(named)
    if args.out:
        _write_outputs({args.out: table})
    print(table, end="")
    return 0


def whisper_reference_section(reference, runs, systems):
    """Markdown: per system, its ASR WER over seeds beside the Whisper decoder's."""
    import statistics

    from mowe.scoring.report import whisper_reference_rows

    lines = ["ASR against the base Whisper's own decoder (`python -m mowe whisper-reference`) "
             "on the same clips; ratio = system WER / Whisper WER, mean over seeds:", "",
             "| system | seeds | Whisper decoder WER % | system WER % | ratio |",
             "|---|---|---|---|---|"]
    for system in systems:
        files = {run: os.path.join(run, system, "hyps.jsonl") for run in runs}
        rows = [row for row in whisper_reference_rows(
            reference, {run: path for run, path in files.items() if os.path.isfile(path)})
            if row[1]]
        if not rows:
            lines.append(f"| {system} | 0 | — | — | — |")
            continue
        whisper = statistics.mean(row[2] for row in rows)
        ours = [row[3] for row in rows]
        ratios = [row[3] / row[2] for row in rows if row[2] > 0]
        spread = f" ± {100 * statistics.stdev(ours):.1f}" if len(ours) > 1 else ""
        ratio = f"{statistics.mean(ratios):.2f}" if ratios else "—"
        lines.append(f"| {system} | {len(rows)} | {100 * whisper:.1f} | "
                     f"{100 * statistics.mean(ours):.1f}{spread} | {ratio} |")
    return "\n".join(lines) + "\n"


def cmd_study(args):
    from mowe.scoring.routing_shares import plot_routing
    from mowe.scoring.study import StudyError, study_markdown, summarise

    try:
        summary = summarise(args.runs, args.systems, args.reference, args.resamples,
                            allow_missing=args.allow_missing)
    except StudyError as error:
        raise SystemExit(f"error: {error}")
    table = study_markdown(summary)
    if args.whisper_reference:
        table += "\n" + whisper_reference_section(args.whisper_reference, args.runs,
                                                   args.systems)
    outputs = {}
    if args.out:
        outputs[args.out] = table
        outputs[os.path.splitext(args.out)[0] + ".json"] = json.dumps(summary, indent=2)
    _write_outputs(outputs)
    if args.out:
        for system, shares in summary["routing"].items():
            png = os.path.join(os.path.dirname(os.path.abspath(args.out)),
                               f"routing_{system}.png")
            plot_routing(shares, png, title=f"{system}: data-dependent router per task "
                         f"(mean over {len(args.runs)} seeds)")
    print(table, end="")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mowe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score one hypothesis file",
                           description="Per-task metrics of one hypothesis file.")
    score.add_argument("--hyp_file", required=True, help="JSON lines: id, task, instruction, "
                       "hyp, ref")
    score.add_argument("--out_dir", required=True, help="gets scores.json, scores.md, "
                       "items.jsonl (and judge_cache.jsonl)")
    score.add_argument("--train_manifest", help="training manifest: answers for the trivial "
                       "answerer (default: the test references)")
    score.add_argument("--tasks", nargs="+", help="score only these tasks")
    score.add_argument("--no_java_meteor", action="store_true",
                       help="skip METEOR 1.5 (Java) for captioning")
    score.add_argument("--judge", choices=["none", "hf", "openai"], default="none",
                       help="model-as-judge backend for ER/AQA/SQA/AC (default: none)")
    score.add_argument("--judge_model", help="hf: local model folder; openai: model name")
    score.add_argument("--judge_url", help="openai: server root, e.g. http://host:8000/v1")
    score.add_argument("--judge_endpoint", choices=["chat", "completions"], default="chat")
    score.add_argument("--judge_template", help="audiobench (AudioBench's Llama-3-70B "
                       "prompt; the paper recipes' default), audiobench_v2 (its later "
                       "version), mowe (this project's rubric; the default here) or a "
                       "template file with {question}, {reference}, {answer}")
    score.add_argument("--judge_parse", default="auto",
                       choices=["auto", "audiobench", "rating_line"],
                       help="rating rule: audiobench (float of the reply's last token) or "
                       "rating_line (a final 'Rating: <int>' line); auto: the template's")
    score.add_argument("--judge_timeout", type=float, default=120.0, help="seconds/request")
    score.add_argument("--judge_retries", type=int, default=3)
    score.add_argument("--judge_concurrency", type=int, default=8)
    score.add_argument("--judge_max_tokens", type=int, default=256)
    score.set_defaults(func=cmd_score)
    aggregate = sub.add_parser("aggregate", help="merge several experiments into one table",
                               description="Merge scores.json files into one RESULTS table.")
    aggregate.add_argument("experiments", nargs="+", help="scores.json files or their folders")
    aggregate.add_argument("--names", nargs="+", help="row names (default: folder names)")
    aggregate.add_argument("--out", help="write the markdown table here too")
    aggregate.set_defaults(func=cmd_aggregate)
    study = sub.add_parser(
        "study", help="several seeds of several systems, with uncertainty",
        description="Mean ± std over seeds per task and system, each system's difference to "
                    "a reference with a 95 % two-level bootstrap interval (each resample "
                    "draws training seeds with replacement, each system on its own, then "
                    "one set of test clips with replacement shared by both systems: "
                    "paired), and the data-dependent router's shares per task.")
    study.add_argument("--runs", nargs="+", required=True,
                       help="one folder per seed, each holding <system>/items.jsonl")
    study.add_argument("--systems", nargs="+", required=True)
    study.add_argument("--reference", default="baseline", help="system the others are "
                       "compared with (default: baseline)")
    study.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    study.add_argument("--allow_missing", action="store_true",
                       help="report the (run, system) pairs scored so far and list the "
                            "others (a sweep still running) instead of refusing")
    study.add_argument("--whisper_reference", help="hypotheses of the base Whisper's own "
                       "decoder (python -m mowe whisper-reference): adds each system's ASR "
                       "WER beside it")
    study.add_argument("--out", help="write the markdown here, the numbers as .json beside "
                       "it and routing_<system>.png in its folder")
    study.set_defaults(func=cmd_study)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
