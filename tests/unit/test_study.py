"""The multi-seed study report: mean ± std, paired bootstrap differences, routing shares."""

import json
import math

import numpy as np
import pytest

from mowe.scoring.__main__ import main as scoring_main
from mowe.scoring.study import StudyError, bootstrap_difference, study_markdown, summarise
from mowe.scoring.task_metrics import score_rows


def write_system(run, system, items, selected=None):
    folder = run / system
    folder.mkdir(parents=True)
    with open(folder / "items.jsonl", "w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item) + "\n")
    with open(folder / "hyps.jsonl", "w", encoding="utf-8") as handle:
        for n, item in enumerate(items):
            row = {"id": item["id"], "task": item["task"], "hyp": "", "ref": ""}
            if selected is not None:
                row.update(selected=[0, selected(item, n)], routers=["indep", "dep"])
            handle.write(json.dumps(row) + "\n")


def er_items(correct):
    return [{"id": f"er{n}", "task": "er", "correct": float(c)} for n, c in enumerate(correct)]


def asr_items(counts):
    return [{"id": f"asr{n}", "task": "asr", "word_errors": e, "reference_words": w}
            for n, (e, w) in enumerate(counts)]


def test_mean_std_over_seeds_and_wer_as_a_ratio_of_sums(tmp_path):
    # ER accuracy per seed: baseline 0.5, 0.5, 0.75; mowe 0.75, 1.0, 1.0
    base = [[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 1, 0]]
    mowe = [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
    # ASR: one long clip with 1 error in 10 words, one short with 2 in 2: corpus WER 3/12
    asr = [(1, 10), (2, 2)]
    runs = []
    for seed in range(3):
        run = tmp_path / f"seed{seed + 1}"
        write_system(run, "baseline", er_items(base[seed]) + asr_items(asr))
        write_system(run, "mowe", er_items(mowe[seed]) + asr_items([(0, 10), (1, 2)]),
                     selected=lambda item, n: 1 if item["task"] == "asr" else 2)
        runs.append(str(run))
    summary = summarise(runs, ["baseline", "mowe"], "baseline", resamples=500)
    er = summary["tasks"]["er"]["systems"]
    assert er["baseline"]["per_seed"] == [0.5, 0.5, 0.75]
    assert er["baseline"]["mean"] == pytest.approx(0.5833333)
    assert er["baseline"]["std"] == pytest.approx(np.std([0.5, 0.5, 0.75], ddof=1))
    assert er["mowe"]["diff"] == pytest.approx(11 / 12 - 7 / 12)
    assert er["mowe"]["ci_low"] <= er["mowe"]["diff"] <= er["mowe"]["ci_high"]
    asr = summary["tasks"]["asr"]["systems"]
    assert asr["baseline"]["mean"] == pytest.approx(3 / 12), "not the mean of per-clip WERs"
    assert asr["mowe"]["diff"] == pytest.approx(1 / 12 - 3 / 12)
    assert summary["routing"] == {"mowe": {"asr": {1: 1.0}, "er": {2: 1.0}}}
    assert "baseline" not in summary["routing"], "a base-only system has no routing"


def test_bootstrap_interval_excludes_zero_only_for_a_real_difference():
    rng = np.random.default_rng(1)
    ids = list(range(200))
    reference = [(ids, rng.integers(0, 2, 200).astype(float), np.ones(200))]
    better = [(ids, np.maximum(reference[0][1], rng.integers(0, 2, 200)), np.ones(200))]
    point, low, high = bootstrap_difference(better, reference, resamples=1000)
    assert point > 0 and low > 0, "every clip at least as good and many better: excludes 0"
    same = [(ids, reference[0][1].copy(), np.ones(200))]
    shuffled = [(ids, rng.permutation(reference[0][1]), np.ones(200))]
    assert bootstrap_difference(same, reference) == (0.0, 0.0, 0.0)
    point, low, high = bootstrap_difference(shuffled, reference, resamples=1000)
    assert low < 0 < high, "same accuracy, clips shuffled: the interval covers 0"


def test_seed_to_seed_variation_widens_the_interval():
    """Three seeds per system whose accuracies move by 10 points from seed to seed, the
    system 5 points ahead on average: resampling clips alone would call that certain; the
    two-level bootstrap must not (it must cover 0), while a steady 5-point gain with the
    same clips stays clear of 0."""
    rng = np.random.default_rng(0)
    clips = 300
    ids = list(range(clips))

    def run(accuracy):
        return (ids, (rng.random(clips) < accuracy).astype(float), np.ones(clips))

    reference = [run(a) for a in (0.50, 0.60, 0.70)]
    jumpy = [run(a) for a in (0.45, 0.65, 0.85)]
    point, low, high = bootstrap_difference(jumpy, reference, resamples=1000)
    assert 0.0 < point < 0.12
    assert low < 0 < high, "three seeds that disagree this much cannot exclude 0"
    steady_ref = [(ids, r[1], r[2]) for r in [run(0.6)] * 3]
    steady = [(ids, np.maximum(steady_ref[0][1], (rng.random(clips) < 0.15)), np.ones(clips))
              for _ in range(3)]
    point, low, high = bootstrap_difference(steady, steady_ref, resamples=1000)
    assert low > 0, "the same gain in every seed excludes 0"


def test_runs_that_do_not_share_test_clips_are_refused(tmp_path):
    write_system(tmp_path / "s1", "baseline", er_items([1, 0]))
    write_system(tmp_path / "s1", "mowe", er_items([1, 0, 1]))
    with pytest.raises(StudyError, match="not scored on the same test clips"):
        summarise([str(tmp_path / "s1")], ["baseline", "mowe"], "baseline")
    with pytest.raises(StudyError, match="items.jsonl missing"):
        summarise([str(tmp_path / "s1")], ["baseline", "absent"], "baseline")
    write_system(tmp_path / "s2", "baseline", [{"id": "a", "task": "asr"}])
    with pytest.raises(StudyError, match="re-score with this version"):
        summarise([str(tmp_path / "s2")], ["baseline"], "baseline")


def test_scored_asr_items_carry_edit_counts_that_add_up_to_the_corpus():
    rows = [{"id": "a", "task": "asr", "hyp": "the cat sat", "ref": "the cat sat down"},
            {"id": "b", "task": "asr", "hyp": "a dog barked loudly", "ref": "a dog barked"},
            {"id": "c", "task": "asr", "hyp": "", "ref": "hello world"}]
    scores, items = score_rows(rows)
    assert sum(i["word_errors"] for i in items) == (scores["asr"]["substitutions"]
                                                    + scores["asr"]["deletions"]
                                                    + scores["asr"]["insertions"])
    assert sum(i["reference_words"] for i in items) == scores["asr"]["reference_words"]
    assert [i["word_errors"] for i in items] == [1, 1, 2]


def test_cli_writes_markdown_json_and_routing_plots(tmp_path, capsys):
    runs = []
    for seed in (1, 2):
        run = tmp_path / "study" / f"seed{seed}"
        write_system(run, "baseline", er_items([1, 0, 0, 1]))
        write_system(run, "mowe", er_items([1, 1, 0, 1]), selected=lambda item, n: n % 2)
        runs.append(str(run))
    out = tmp_path / "study" / "RESULTS_study.md"
    assert scoring_main(["study", "--runs", *runs, "--systems", "baseline", "mowe",
                         "--out", str(out), "--resamples", "200"]) == 0
    text = out.read_text()
    assert "Mean ± standard deviation over 2 seed(s)" in text
    assert "| mowe | 75.0 ± 0.0 |" in text and "| baseline | 50.0 ± 0.0 |" in text
    assert "+25.0 [" in text
    assert "| ER | 50 % | 50 % |" in text  # encoders 0 and 1 each get half of the clips
    numbers = json.loads((tmp_path / "study" / "RESULTS_study.json").read_text())
    assert numbers["tasks"]["er"]["systems"]["mowe"]["mean"] == 0.75
    assert (tmp_path / "study" / "routing_mowe.png").stat().st_size > 1000
    assert text in capsys.readouterr().out
    with pytest.raises(SystemExit, match="reference system 'nobody'"):
        scoring_main(["study", "--runs", *runs, "--systems", "mowe", "--reference", "nobody"])
    assert math.isfinite(numbers["tasks"]["er"]["systems"]["mowe"]["ci_low"])


def test_a_partial_sweep_reports_what_is_scored_and_lists_the_rest(tmp_path):
    """Seeds 1-2 of baseline and mowe, seed 1 only of an ablation, nothing of a fourth
    system: means over the seeds there are, differences over shared seeds, gaps listed."""
    runs = []
    for seed in (1, 2):
        run = tmp_path / f"seed{seed}"
        write_system(run, "baseline", er_items([1, 0, 0, 1]))
        write_system(run, "mowe", er_items([1, 1, 0, 1] if seed == 1 else [1, 1, 1, 1]))
        if seed == 1:
            write_system(run, "mowe_dep", er_items([0, 0, 0, 1]))
        runs.append(str(run))
    systems = ["baseline", "mowe", "mowe_dep", "mowe_pretrained_pool"]
    with pytest.raises(StudyError, match="items.jsonl missing"):
        summarise(runs, systems, "baseline")  # strict unless asked
    summary = summarise(runs, systems, "baseline", resamples=200, allow_missing=True)
    er = summary["tasks"]["er"]["systems"]
    assert er["mowe"]["mean"] == pytest.approx(0.875) and er["mowe"]["diff_seeds"] == 2
    assert er["mowe_dep"]["per_seed"] == [0.25] and math.isnan(er["mowe_dep"]["std"])
    assert er["mowe_dep"]["diff"] == pytest.approx(0.25 - 0.5), "seed 1's baseline only"
    assert er["mowe_pretrained_pool"]["per_seed"] == [] and "diff" not in er["mowe_pretrained_pool"]
    assert summary["missing"] == {"mowe_dep": [runs[1]],
                                  "mowe_pretrained_pool": runs}
    text = study_markdown(summary)
    assert "| mowe_dep | 25.0 (n=1) |" in text
    assert "| mowe_pretrained_pool | — |" in text
    assert "- mowe_dep: seed2" in text and "- mowe_pretrained_pool: seed1, seed2" in text
    with pytest.raises(StudyError, match="no .* pair has been scored"):
        summarise([str(tmp_path / "nothing")], ["baseline"], "baseline", allow_missing=True)


def test_whisper_reference_section_sets_each_systems_wer_beside_the_whisper_decoders(tmp_path):
    """--whisper_reference: per system, its ASR WER over seeds, the Whisper decoder's WER on
    the same clips and the ratio (normalised like the scorer: case and punctuation)."""
    refs = ["the cat sat", "a dog ran far", "we go home now"]
    whisper = ["The cat sat.", "a dog ran", "we go home now"]            # 1 error / 11 words
    systems = {"baseline": [["the cat", "a dog ran far", "we go home now"],   # 1 error
                            ["the cat sat", "a dog", "we go home"]],          # 3 errors
               "mowe": [["x y z", "a b c d", "e f g h"], ["x y z", "a b c d", "e f g h"]]}
    runs = []
    for seed in (0, 1):
        run = tmp_path / f"seed{seed}"
        for system, hyps in systems.items():
            (run / system).mkdir(parents=True)
            (run / system / "items.jsonl").write_text("".join(
                json.dumps({"id": f"asr{n}", "task": "asr", "word_errors": 0,
                            "reference_words": 3}) + "\n" for n in range(3)))
            (run / system / "hyps.jsonl").write_text("".join(
                json.dumps({"id": f"asr{n}", "task": "asr", "hyp": h, "ref": r}) + "\n"
                for n, (h, r) in enumerate(zip(hyps[seed], refs))))
        runs.append(str(run))
    reference = tmp_path / "whisper.jsonl"
    reference.write_text("".join(json.dumps({"id": f"asr{n}", "task": "asr", "hyp": h,
                                             "ref": r}) + "\n"
                                 for n, (h, r) in enumerate(zip(whisper, refs))))
    out = tmp_path / "STUDY.md"
    assert scoring_main(["study", "--runs", *runs, "--systems", "baseline", "mowe",
                         "--resamples", "50", "--whisper_reference", str(reference),
                         "--out", str(out)]) == 0
    text = out.read_text()
    # baseline: 1 and 3 errors in 11 words (9.1 %, 27.3 %) against Whisper's 1: ratios 1, 3
    assert "| baseline | 2 | 9.1 | 18.2 ± 12.9 | 2.00 |" in text
    assert "| mowe | 2 | 9.1 | 90.9 ± 0.0 | 10.00 |" in text

    from mowe.scoring.report import whisper_reference_table

    table = whisper_reference_table(str(reference), {
        "baseline": str(tmp_path / "seed1" / "baseline" / "hyps.jsonl")})
    assert "| baseline | 3 | 9.1 | 27.3 | 3.00 | no |" in table
    table = whisper_reference_table(str(reference), {"whisper": str(reference)})
    assert "| whisper | 3 | 9.1 | 9.1 | 1.00 | yes |" in table
