"""egs/synthetic end to end at --size tiny: every stage, reruns, damaged audio."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO, RECIPE, run_recipe

STAGES = ["provision", "prepare", "validate", "train", "decode", "score", "report", "pack"]


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def test_every_stage_ran_and_left_its_outputs(tiny_run):
    exp, output = tiny_run
    for number, name in enumerate(STAGES):
        assert f"stage {number} ({name}): done" in output
    data = os.path.join(RECIPE, "data", "tiny_seed1234")
    counts = {split: len(read_json(os.path.join(data, "clean", f"{split}.json")))
              for split in ("train", "valid", "test")}
    assert counts == {"train": 30, "valid": 10, "test": 15}
    for system in ("baseline", "mowe"):
        with open(os.path.join(exp, system, "hyps.jsonl"), encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        assert len(rows) == counts["test"]
        assert {row["task"] for row in rows} == {"asr", "er", "aqa", "sqa", "ac"}
        scores = read_json(os.path.join(exp, system, "scores.json"))
        assert set(scores) == {"asr", "er", "aqa", "sqa", "ac"}
        assert scores["asr"]["wer"] >= 0
        for task in ("er", "aqa"):
            assert 0 <= scores[task]["accuracy"] <= 1
        for task in ("sqa", "ac"):
            assert 0 <= scores[task]["f1"] <= 1
        assert scores["ac"]["primary"] == "meteor_nltk"
        assert 0 <= scores["ac"]["meteor_nltk"] <= 1 and 0 <= scores["ac"]["meteor_java"] <= 1
        assert os.path.isfile(os.path.join(exp, system, "scores.md"))
        if system == "mowe":
            assert all(len(row["selected"]) == 2 for row in rows)
        else:
            assert all(row["selected"] is None for row in rows)
    results = open(os.path.join(exp, "RESULTS.md"), encoding="utf-8").read()
    assert "| baseline |" in results and "| mowe |" in results
    assert "| trivial answerer |" in results
    with open(os.path.join(exp, "routing.png"), "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "RESULTS.md" in output
    # the Whisper-decoder reference: the base Whisper's own transcripts of the ASR clips,
    # scored like the systems, and each system's WER beside it in the report
    assert "stage 5 (whisper_reference): done" in output
    with open(os.path.join(exp, "whisper_decoder", "hyps.jsonl"), encoding="utf-8") as handle:
        reference = [json.loads(line) for line in handle]
    test = read_json(os.path.join(data, "clean", "test.json"))
    assert sorted(r["id"] for r in reference) == sorted(k for k, e in test.items()
                                                        if e["task"] == "asr")
    assert read_json(os.path.join(exp, "whisper_decoder", "scores.json"))["asr"]["count"] \
        == len(reference)
    assert "## ASR: the AudioLLM against its own Whisper's decoder" in results
    table = results.split("own Whisper's decoder")[1]
    for system in ("baseline", "mowe"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {system} |"))
        assert row.split("|")[2].strip() == str(len(reference)), row
    # the smoke check: every system transcribes the sentences in no corpus (stage 5);
    # the report shows each transcript beside what was said and the Whisper decoder's
    assert "stage 5 (smoke): done" in output
    said = [line.split("\t")[2] for line in open(
        os.path.join(RECIPE, "local", "smoke_sentences.tsv"), encoding="utf-8")
        if line.strip() and not line.startswith("#")]
    for system in ("baseline", "mowe"):
        with open(os.path.join(exp, system, "smoke", "smoke.jsonl"), encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        assert [row["text"] + "\n" for row in rows] == said
        assert all("whisper" in row for row in rows)
    section = results.split("## Sentences in no corpus (smoke check)")[1]
    header = next(line for line in section.splitlines() if line.startswith("| id |"))
    assert header.endswith("| Whisper decoder | baseline | mowe |")
    assert all(f"| {text.strip()} |" in section for text in said)


def test_training_logs_the_frozen_llms_dtype(tiny_run):
    """train_llm_dtype auto: bfloat16 where this CPU multiplies it natively, else as built
    (float32); the training log says which, and why."""
    from mowe.train.precision import native_bf16_reason

    exp, _ = tiny_run
    reason = native_bf16_reason(on_gpu=False)
    for system in ("baseline", "mowe"):
        with open(os.path.join(exp, "log", f"train_{system}.log"), encoding="utf-8") as handle:
            log = handle.read()
        if reason:
            assert ("frozen LLM weights in bfloat16 while training (train_llm_dtype auto: "
                    f"{reason}; ") in log
        else:
            assert ("frozen LLM weights in float32 while training (train_llm_dtype auto: "
                    "no native bf16 on this CPU; 0 tensors cast)") in log
        # checkpoints hold trained weights only, in float32: decoding rebuilds the LLM
        # from the spec (float32), whatever the LLM trained in
        save = os.path.join(exp, system, "save")
        newest = sorted(d for d in os.listdir(save) if d.startswith("CKPT"))[-1]
        state = torch.load(os.path.join(save, newest, "model.ckpt"), weights_only=True)
        assert any("lora" in key for key in state)
        assert {value.dtype for value in state.values()
                if torch.is_tensor(value) and value.is_floating_point()} == {torch.float32}


def test_second_run_skips_every_stage(tiny_run):
    exp, _ = tiny_run
    output = run_recipe("--size", "tiny", "--tag", os.path.basename(exp))
    for number, name in enumerate(STAGES):
        assert f"stage {number} ({name}): already done, skipping" in output
    assert "stage 5 (whisper_reference): already done, skipping" in output
    assert "stage 5 (smoke): already done, skipping" in output
    assert ": start" not in output


def test_damaged_wav_is_reported_and_skipped(tiny_run):
    tag = "pytest_damaged"
    shutil.rmtree(os.path.join(RECIPE, "exp", tag), ignore_errors=True)
    run_recipe("--size", "tiny", "--seed", "77", "--tag", tag, "--stage", "1",
               "--stop_stage", "1")
    data = os.path.join(RECIPE, "data", "tiny_seed77")
    train = read_json(os.path.join(data, "raw", "train.json"))
    victim, entry = sorted(train.items())[0]
    with open(entry["wav"], "wb") as handle:
        handle.write(b"RIFF\x00\x00not really a wav")
    output = run_recipe("--size", "tiny", "--seed", "77", "--tag", tag, "--stage", "2",
                        "--stop_stage", "2")
    assert "train.json: kept 29, skipped 1" in output
    clean = read_json(os.path.join(data, "clean", "train.json"))
    assert victim not in clean and len(clean) == 29
    report = read_json(os.path.join(data, "clean", "validation_report.json"))
    assert "cannot read audio file" in report["train.json"]["reasons"][victim]


def test_entry_points_have_help():
    for script in ("train.py", "decode.py", "report.py", "validate_data.py", "extract_features.py"):
        result = subprocess.run([sys.executable, os.path.join(REPO, "recipes", script), "--help"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "usage" in result.stdout.lower(), script


def test_packed_model_answers_like_decode_py_in_a_fresh_process(tiny_run):
    """Stage 7's folder, loaded in fresh processes, gives recipes/decode.py's answers for
    the same clips through the API, the CLI and the OpenAI-compatible server."""
    from concurrent.futures import ThreadPoolExecutor

    from serving import ENV, audio_message, openai_client, start_server

    exp, output = tiny_run
    package = os.path.join(exp, "packed", "mowe")
    for name in ("hyperparams.yaml", "model.safetensors", "mowe_package.json", "README.md",
                 "routing.png", os.path.join("tokenizer", "tokenizer_config.json")):
        assert os.path.isfile(os.path.join(package, name)), name
    card = open(os.path.join(package, "README.md"), encoding="utf-8").read()
    assert "base_model:" in card and "model-index:" in card and "recipes/train.py" in card
    assert "run.sh --stage 0 --stop_stage 7 --size tiny" in card
    assert "-m mowe infer --model" in output and "python -m mowe serve --model" in output
    manifest = read_json(os.path.join(RECIPE, "data", "tiny_seed1234", "clean", "test.json"))
    with open(os.path.join(exp, "mowe", "hyps.jsonl"), encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    for row in rows:
        row["wav"] = os.path.abspath(os.path.join(RECIPE, manifest[row["id"]]["wav"])) \
            if not os.path.isabs(manifest[row["id"]]["wav"]) else manifest[row["id"]]["wav"]
    # the Python API, in a fresh process
    script = ("import json, sys\nfrom mowe.inference.api import AudioLLMInference\n"
              "rows = json.load(sys.stdin)\n"
              f"model = AudioLLMInference.from_pretrained({package!r})\n"
              "answers = model.answer([r['wav'] for r in rows], [r['instruction'] for r in rows],"
              " return_selected=True)\n"
              "print(json.dumps([[a.text, a.selected] for a in answers]))\n")
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps(rows),
                            capture_output=True, text=True, env=ENV, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers == [[row["hyp"], row["selected"]] for row in rows]
    # the CLI, on the clips that share the most common instruction
    instruction = max({r["instruction"] for r in rows},
                      key=lambda text: sum(r["instruction"] == text for r in rows))
    group = [row for row in rows if row["instruction"] == instruction]
    result = subprocess.run([sys.executable, "-m", "mowe.inference.ask", "--model", package,
                             *[row["wav"] for row in group], "--instruction", instruction,
                             "--json"], capture_output=True, text=True, env=ENV, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["answer"] for line in lines] == [row["hyp"] for row in group]
    # the server, every clip at once through the openai client
    server, url = start_server(package)
    try:
        client = openai_client(url)
        model_id = client.models.list().data[0].id

        def ask(row):
            reply = client.chat.completions.create(
                model=model_id, messages=[audio_message(row["wav"], row["instruction"])])
            return reply.choices[0].message.content

        with ThreadPoolExecutor(len(rows)) as pool:
            assert list(pool.map(ask, rows)) == [row["hyp"] for row in rows]
    finally:
        server.stop()
