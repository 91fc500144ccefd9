"""Decoding settings (issue 14): conf/decode.yaml and --beam_size=... reach ``generate``;
beam search of width 1 is greedy search; width 4 finds the highest-scoring sequence of a
toy bigram LM where greedy search does not; sampling draws from the distribution."""

import math

import pytest
import torch
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from mowe.recipe.hparams import decode_settings

# Toy bigram LM over 4 tokens (0 = EOS, 1 = start). From the start, token 2 is likelier
# (0.6) than token 3 (0.4), but 2 is followed by anything (0.34 at best) and 3 by EOS
# with 0.99: greedy picks 2 then EOS (0.6 x 0.34 = 0.20); the best sequence is 3, EOS
# (0.4 x 0.99 = 0.40), which beam search of width 4 keeps.
TABLE = torch.tensor([
    [0.97, 0.01, 0.01, 0.01],  # after EOS
    [0.00, 0.00, 0.60, 0.40],  # after start
    [0.34, 0.00, 0.33, 0.33],  # after 2
    [0.99, 0.00, 0.005, 0.005],  # after 3
]).clamp_min(1e-9).log()


class BigramConfig(PretrainedConfig):
    model_type = "toy_bigram"

    def __init__(self, **kwargs):
        kwargs.setdefault("vocab_size", 4)
        kwargs.setdefault("eos_token_id", 0)
        kwargs.setdefault("pad_token_id", 0)
        kwargs.setdefault("bos_token_id", 1)
        super().__init__(**kwargs)


class BigramLM(PreTrainedModel, GenerationMixin):
    config_class = BigramConfig
    main_input_name = "input_ids"

    def __init__(self, config):
        super().__init__(config)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        logits = TABLE[input_ids] + 0 * self.dummy
        return CausalLMOutputWithPast(logits=logits)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        return {"input_ids": input_ids}


@pytest.fixture(scope="module")
def toy():
    return BigramLM(BigramConfig()).eval()


def generate(model, **settings):
    start = torch.tensor([[1]])
    out = model.generate(start, max_new_tokens=3, use_cache=False, pad_token_id=0,
                         eos_token_id=0, **settings)
    return out[0, 1:].tolist()


def score(tokens):
    previous, total = 1, 0.0
    for token in tokens:
        total += TABLE[previous, token].item()
        if token == 0:
            break
        previous = token
    return total


def test_beam_1_is_greedy_and_beam_4_finds_the_best_sequence(toy):
    greedy = generate(toy, do_sample=False, num_beams=1)
    assert greedy[:2] == [2, 0]                       # 0.6 then 0.34
    _, beam1 = decode_settings(["--beam_size=1"])
    assert generate(toy, do_sample=False, **beam1) == greedy
    _, beam4 = decode_settings(["--beam_size", "4"])
    best = generate(toy, do_sample=False, length_penalty=0.0, **beam4)
    assert best[:2] == [3, 0]
    assert math.exp(score(best)) == pytest.approx(0.4 * 0.99)
    assert score(best) > score(greedy)


def test_sampling_draws_from_the_distribution(toy):
    torch.manual_seed(0)
    _, settings = decode_settings(["--do_sample=true", "--temperature=1.0", "--top_k=0"])
    firsts = [generate(toy, **settings)[0] for _ in range(200)]
    share = firsts.count(2) / len(firsts)
    assert set(firsts) == {2, 3} and 0.45 < share < 0.75   # p = 0.6


def test_decode_config_file_then_command_line(tmp_path):
    config = tmp_path / "decode.yaml"
    config.write_text("beam_size: 4\nrepetition_penalty: 1.2\nmax_new_tokens: 64\n")
    rest, kwargs = decode_settings(["train.yaml", f"--decode_config={config}",
                                    "--max_new_tokens=8", "--output_folder=x"],
                                   {"max_new_tokens": 40})
    assert rest == ["train.yaml", "--output_folder=x"]
    assert kwargs == {"num_beams": 4, "repetition_penalty": 1.2, "max_new_tokens": 8}


@pytest.mark.parametrize("argv,message", [
    (["--beam_size=four"], "beam_size must be a whole number"),
    (["--do_sample=yes"], "do_sample must be true or false"),
])
def test_bad_decoding_options_end_in_one_line(argv, message):
    with pytest.raises(SystemExit, match=message):
        decode_settings(argv)


def test_unknown_key_in_decode_config(tmp_path):
    config = tmp_path / "decode.yaml"
    config.write_text("beam: 4\n")
    with pytest.raises(SystemExit, match="unknown decoding option 'beam'"):
        decode_settings([f"--decode_config={config}"])


def test_every_recipe_decode_config_is_valid():
    import glob
    import os

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    configs = glob.glob(os.path.join(repo, "egs", "*", "conf", "decode.yaml"))
    assert len(configs) >= 8   # every recipe and egs/TEMPLATE
    for config in configs:
        _, kwargs = decode_settings([f"--decode_config={config}"])
        assert "num_beams" in kwargs and "max_new_tokens" in kwargs, config


def test_audio_llm_generate_takes_the_decode_settings(tmp_path):
    """The settings decode.py forwards work through AudioLLM.generate (prompt given as
    embeddings): beam 1 equals the default greedy answers; beam 4 and sampling run."""
    import os

    from mowe.recipe.hparams import load_recipe_hparams
    from mowe.utils.tiny_models import make_tiny_pretrained_dir

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pretrained = make_tiny_pretrained_dir(str(tmp_path / "pretrained"))
    _, _, _, hparams = load_recipe_hparams([
        os.path.join(repo, "egs", "TEMPLATE", "conf", "train.yaml"),
        f"--output_folder={tmp_path / 'exp'}", f"--data_folder={tmp_path}",
        f"--pretrained_dir={pretrained}", "--spec={adapter_dim: 32, lora_rank: 4}"])
    model = hparams["model"].eval()
    torch.manual_seed(0)
    wav, lens = torch.randn(2, 16000) * 0.1, torch.tensor([1.0, 0.7])
    prompts = ["Transcribe the speech.", "What emotion?"]
    with torch.no_grad():
        greedy = model.generate(wav, lens, prompts, max_new_tokens=6)
        answers = {}
        for argv in (["--beam_size=1"], ["--beam_size=4", "--repetition_penalty=1.1"],
                     ["--do_sample=true", "--top_p=0.9", "--temperature=0.7"]):
            _, kwargs = decode_settings(argv, {"max_new_tokens": 6})
            answers[argv[0]] = model.generate(wav, lens, prompts, **kwargs)
    assert answers["--beam_size=1"] == greedy
    assert all(len(texts) == 2 for texts in answers.values())


def test_decode_py_says_precision_is_trainings_and_answers_as_without_it(tiny_package,
                                                                         tmp_path):
    """The stage driver hands --precision=bf16 to decode.py with a GPU; decoding keeps the
    spec's weights (batched answers equal one-by-one ones), says so, and answers exactly
    as without the option."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO

    hyp_file = tmp_path / "hyps_bf16.jsonl"
    command = [sys.executable, os.path.join(REPO, "recipes", "decode.py"),
               os.path.join(REPO, "egs", "synthetic", "conf", "train.yaml"),
               f"--output_folder={tiny_package['exp']}",
               f"--data_folder={tiny_package['data']}",
               f"--pretrained_dir={tiny_package['pretrained']}", "--batch_size=2",
               "--max_new_tokens=6", "--seed=7", "--precision=bf16", f"--hyp_file={hyp_file}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900,
                            cwd=str(tiny_package["root"]),
                            env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--precision=bf16 applies to training only" in result.stderr
    with open(hyp_file, encoding="utf-8") as handle:
        answers = {row["id"]: row["hyp"] for row in map(json.loads, handle)}
    assert answers == {row["id"]: row["hyp"] for row in tiny_package["hyps"]}
