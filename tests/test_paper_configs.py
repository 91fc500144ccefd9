"""Every paper configuration loads and runs a forward/backward step when its hub ids are
replaced by tiny random local models of the same families (Whisper, HuBERT, Llama,
Mistral, Phi-3) — the YAMLs are wired right without downloading anything."""

import os

import pytest
import torch

from mowe.recipe import load_recipe_hparams

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = os.path.join(REPO, "recipes", "conf", "paper")


@pytest.fixture(scope="module")
def family_models(tmp_path_factory):
    from mowe.testing import make_tiny_causal_lm, make_tiny_hubert, make_tiny_whisper

    root = tmp_path_factory.mktemp("families")
    models = {"whisper": make_tiny_whisper(str(root / "whisper")),
              "hubert": make_tiny_hubert(str(root / "hubert")),
              "cache": str(root / "cache")}
    for family in ("llama", "mistral", "phi3"):
        models[family] = make_tiny_causal_lm(str(root / family), family)
    return models


def paper_argv(models, tmp_path, llm, *extra):
    """train.yaml with the hub ids swapped for the tiny local models, sizes shrunk."""
    return [os.path.join(PAPER, "train.yaml"), *extra,
            f"--output_folder={tmp_path / 'exp'}", f"--data_folder={tmp_path}",
            f"--pretrained_cache={models['cache']}",
            f"--base_encoder_source={models['whisper']}",
            f"--weak_encoder_source={models['whisper']}",
            f"--hubert_source={models['hubert']}", f"--hubert_er_source={models['hubert']}",
            f"--llm_source={models[llm]}", "--llm_dtype=float32",
            "--spec={adapter_dim: 32, lora_rank: 4}"]


ROWS = [  # (overrides files, LLM family, extra command-line overrides, expected)
    ([], "llama", [], {"routers": 2, "pool": 4, "adapter": "LinearDownsampleAdapter"}),
    (["baseline.yaml"], "llama", [], {"routers": 0}),
    (["llm_zephyr.yaml"], "mistral", [], {"routers": 2}),
    (["llm_phi3.yaml"], "phi3", [], {"routers": 2, "lora": "qkv_proj"}),
    ([], "llama", ["--routers=[indep]", "--num_weak_encoders=2"], {"routers": 1, "pool": 2}),
    ([], "llama", ["--routers=[dep]", "--num_weak_encoders=2"], {"routers": 1, "pool": 2}),
    ([], "llama", ["--routers=[indep, indep]"], {"routers": 2, "pool": 4}),
    ([], "llama", ["--routers=[dep, dep]"], {"routers": 2, "pool": 4}),
    (["table5_diverse_pool.yaml"], "llama", [], {"routers": 2, "pool": 4, "ssl": 2,
                                                  "prior": [-1.0, -1.0, -1.0, 1.0]}),
    (["table6_specaug_conv.yaml"], "llama", [], {"routers": 2, "adapter": "ConvAdapter",
                                                 "augment": 2}),
]


@pytest.mark.parametrize("files, llm, extra, expected", ROWS,
                         ids=["table3_mowe", "table3_baseline", "zephyr", "phi3",
                              "table4_indep", "table4_dep", "table4_indep2", "table4_dep2", "table5_pool",
                              "table6_specaug_conv"])
def test_configuration_forward_backward(family_models, tmp_path, files, llm, extra,
                                        expected):
    argv = paper_argv(family_models, tmp_path, llm, *extra,
                      *[f"--overrides_file={os.path.join(PAPER, f)}" for f in files])
    _, _, _, hparams = load_recipe_hparams(argv)
    model = hparams["model"]
    assert hparams["global_batch_size"] == 32
    assert hparams["number_of_epochs"] == 5 and hparams["lr"] == pytest.approx(5e-5)
    mixture = model.mixture
    if expected["routers"] == 0:
        assert mixture is None
    else:
        assert len(mixture.router_kinds) == expected["routers"]
        if "pool" in expected:
            assert len(mixture.encoders) == expected["pool"]
        if "ssl" in expected:
            kinds = [type(e).__name__ for e in mixture.encoders]
            assert kinds.count("SSLEncoder") == expected["ssl"]
        if "prior" in expected:
            assert mixture.routers[0].w_indep.detach().tolist() == \
                expected["prior"]
    if "adapter" in expected:
        assert type(model.adapter).__name__ == expected["adapter"]
    masks = len(model.base_encoder.augment[0].masks)
    assert masks == expected.get("augment", 0)  # SpecAugment only in Table VI
    if "lora" in expected:
        names = [n for n, p in model.llm.named_parameters() if p.requires_grad]
        assert any(expected["lora"] in n and "lora_" in n for n in names)
    model.train()
    wav = torch.randn(2, 16000) * 0.1
    out = model(wav, torch.tensor([1.0, 0.6]), ["Transcribe.", "What emotion?"],
                ["hello there", "joy"])
    loss = out.next_token_loss + 0.1 * out.mowe_loss
    assert torch.isfinite(loss)
    loss.backward()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)
    # the LLM's own weights stay frozen; LoRA and the audio side learn
    assert all(not p.requires_grad for n, p in model.llm.named_parameters()
               if "lora_" not in n)
