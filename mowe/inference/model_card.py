"""The ``README.md`` of a packaged model: a Hugging Face model card.

YAML front matter (``library_name``, ``license``, ``tags``, ``base_model``, ``datasets``,
``metrics``, ``model-index`` with the recipe's test scores), then the model, its scores,
the routing plot, how to load it and the command that trained it.

Example
-------
>>> card = render_model_card({"name": "demo", "routers": [], "sources": {}}, {})
>>> card.startswith("---\\nlibrary_name: mowe\\n")
True
"""

import json

from mowe.scoring.report import format_value, metric_label

TASK_TYPES = {  # task -> (Hugging Face task type, readable name)
    "asr": ("automatic-speech-recognition", "Speech recognition (ASR)"),
    "er": ("audio-classification", "Emotion recognition (ER)"),
    "aqa": ("audio-question-answering", "Audio question answering (AQA)"),
    "sqa": ("question-answering", "Spoken question answering (SQA)"),
    "ac": ("audio-captioning", "Audio captioning (AC)"),
}
METRIC_TYPES = {"wer": "wer", "wer_plain": "wer", "accuracy": "accuracy",
                "exact_match": "exact_match", "f1": "f1", "meteor_nltk": "meteor",
                "meteor_java": "meteor", "yes_no_accuracy": "accuracy"}
BASE_TAGS = ["audio", "audio-llm", "speech", "mowe", "mixture-of-weak-encoders",
             "speechbrain", "peft", "lora"]


def _front_matter(info, scores, license_name, datasets, base_models):
    """The YAML header as a dict (dumped with json-compatible scalars)."""
    metrics = sorted({METRIC_TYPES.get(entry.get("primary"), entry.get("primary"))
                      for entry in scores.values() if entry.get("primary")})
    results = []
    dataset_name = datasets[0] if datasets else "custom"
    for task, entry in scores.items():
        primary = entry.get("primary")
        if primary is None or entry.get(primary) is None:
            continue
        task_type, task_name = TASK_TYPES.get(task, ("audio-text-to-text", task.upper()))
        results.append({
            "task": {"type": task_type, "name": task_name},
            "dataset": {"name": f"{dataset_name} test ({task})", "type": dataset_name,
                        "split": "test"},
            "metrics": [{"type": METRIC_TYPES.get(primary, primary), "name": primary,
                         "value": round(float(entry[primary]), 4)}],
        })
    tags = BASE_TAGS + sorted({TASK_TYPES[t][0] for t in scores if t in TASK_TYPES})
    header = {"library_name": "mowe", "license": license_name, "pipeline_tag":
              "audio-text-to-text", "tags": tags}
    if base_models:
        header["base_model"] = list(base_models)
    if datasets:
        header["datasets"] = list(datasets)
    if metrics:
        header["metrics"] = metrics
    if results:
        header["model-index"] = [{"name": info.get("name", "mowe"), "results": results}]
    return header


def _dump_yaml(data):
    import io

    import ruamel.yaml

    yaml = ruamel.yaml.YAML()
    yaml.default_flow_style = False
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(json.loads(json.dumps(data)), out)
    return out.getvalue()


def _scores_table(scores):
    lines = ["| task | test clips | metric | value |", "|---|---|---|---|"]
    for task, entry in scores.items():
        primary = entry.get("primary")
        if primary is None:
            continue
        lines.append(f"| {task.upper()} | {entry.get('count', '')} | {metric_label(primary)} "
                     f"| {format_value(primary, entry.get(primary))} |")
    return "\n".join(lines)


def _sources_table(sources):
    lines = ["| spec key | source | revision | weights (sha256) |", "|---|---|---|---|"]
    for key, record in sources.items():
        hashes = "<br>".join(f"`{name}` {digest[:16]}…"
                             for name, digest in sorted(record.get("sha256", {}).items()))
        lines.append(f"| `{key}` | `{record['source']}` ({record.get('kind', '')}) | "
                     f"{record.get('revision') or '—'} | {hashes or '—'} |")
    return "\n".join(lines)


def render_model_card(info, scores, license_name="other", datasets=(), base_models=(),
                      routing_plot=None, repo_id=None):
    """The model card text.

    Arguments
    ---------
    info : dict
        The package's ``mowe_package.json`` content.
    scores : dict
        The recipe's ``scores.json`` (task -> metrics, ``primary``, ``count``).
    license_name : str
        A Hugging Face license id (``apache-2.0``, ``mit``, ``other`` ...).
    datasets : list of str
        Training data set names.
    base_models : list of str
        Hub ids of the frozen base models.
    routing_plot : str, optional
        File name of the routing plot inside the package.
    repo_id : str, optional
        Hub repository the card is written for (shown in the loading example).

    Returns
    -------
    str
    """
    name = info.get("name", "mowe")
    where = repo_id or "PATH/TO/THIS/FOLDER"
    routers = info.get("routers") or []
    mixture = (f"a mixture of {info.get('num_weak_encoders', '?')} weak encoders chosen by "
               f"{len(routers)} router(s) ({', '.join(routers)})" if routers
               else "no mixture of weak encoders (the base-only baseline)")
    parts = ["---", _dump_yaml(_front_matter(info, scores, license_name, list(datasets),
                                             list(base_models))).rstrip("\n"), "---", "",
             f"# {name}", "",
             "A multitask audio LLM trained with the MoWE toolkit "
             "(Mixture of Weak Encoders): a strong base encoder, " + mixture + ", an "
             "adapter and a projection into an instruction-tuned LLM with LoRA. It answers "
             "an instruction about a clip (transcription, emotion, questions about sounds "
             "or speech, captions).", ""]
    parts += ["## Results", ""]
    if scores:
        parts += [f"Test scores of the recipe that trained it (`scores.json`):", "",
                  _scores_table(scores), ""]
    else:
        parts += ["No scores were recorded for this model.", ""]
    if routing_plot:
        parts += ["## Routing", "", f"![routing]({routing_plot})", "",
                  "Share of each task's test clips the data-dependent router sends to each "
                  "weak encoder.", ""]
    parts += ["## How to use", "",
              "Install the toolkit (`pip install mowe[demo]` or `tools/install.sh`), have the "
              "frozen models below at hand, then:", "",
              "```python",
              "from mowe.inference.api import AudioLLMInference",
              f"model = AudioLLMInference.from_pretrained(\"{where}\")",
              "print(model.answer(\"clip.wav\", \"Transcribe the speech.\"))",
              "```", "",
              "```bash",
              f"python -m mowe infer --model {where} clip.wav --instruction \"Transcribe the speech.\"",
              f"python -m mowe serve --model {where} --port 8000   # OpenAI-compatible API",
              f"python -m mowe web --model {where}                # browser demo",
              "```", "",
              "Decoding defaults: " + ", ".join(f"{k}={v}" for k, v in
                                                 info.get("decoding", {}).items()) + ".", ""]
    parts += ["## Files and frozen models", "",
              "`model.safetensors` holds only the trained weights (weak encoders, routers, "
              "adapter, projection, LoRA, and the base encoder when it was fine-tuned); "
              "`hyperparams.yaml` is the resolved model spec; `tokenizer/` the LLM "
              "tokenizer and chat template. The frozen models are loaded from their sources "
              "and their weights are checked against these SHA-256 sums at load time "
              "(move them with `sources={\"llm_source\": DIR}` or `--source llm_source=DIR`):",
              "", _sources_table(info.get("sources", {})), ""]
    checkpoint = info.get("checkpoint") or {}
    parts += ["## Training", ""]
    if info.get("recipe_command"):
        parts += ["Recipe:", "", "```bash", info["recipe_command"], "```", ""]
    if info.get("train_command"):
        parts += ["Training command (from the recipe's log):", "", "```bash",
                  info["train_command"], "```", ""]
    if checkpoint.get("meta"):
        parts += ["Checkpoint: " + ", ".join(f"{k} {v}" for k, v in checkpoint["meta"].items()
                                             if k != "unixtime") + ".", ""]
    parts += [f"Packed with mowe {info.get('mowe_version', '?')} on {info.get('created', '?')}.",
              ""]
    return "\n".join(parts)
