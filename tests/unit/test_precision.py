"""The frozen LLM's training dtype (mowe/train/precision.py, recipes/train.py's
``train_llm_dtype``): bfloat16 only where the device multiplies it natively, LoRA kept in
float32, the same loss and gradients within bf16's precision, bad values refused."""

import pytest
import torch
from conftest import load_spec, load_train_module

from mowe.train.precision import (cast_frozen_parameters, cpu_flags, native_bf16_reason,
                            training_llm_dtype)


def test_cpu_flags_come_from_cpuinfo_on_x86_and_arm(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n\n"
                   "processor\t: 1\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n")
    assert {"amx_bf16", "avx2"} <= cpu_flags(str(x86))
    assert "bf16" in cpu_flags(str(arm))
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("flags,expected", [
    ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, torch.bfloat16),  # Intel Sapphire Rapids
    ({"avx2", "avx512f", "avx512_bf16"}, torch.bfloat16),            # AMD Zen 4, Cooper Lake
    ({"fp", "asimd", "bf16"}, torch.bfloat16),                       # Arm v8.6+
    ({"avx2", "fma", "avx512f"}, None),                              # no native bf16
    (set(), None),                                                   # flags unknown
])
def test_auto_trains_in_bf16_only_where_the_cpu_has_it(flags, expected):
    assert training_llm_dtype("auto", on_gpu=False, flags=flags) == expected


def test_auto_on_a_gpu_asks_the_gpu_not_the_cpu():
    amx = {"amx_bf16"}
    assert training_llm_dtype("auto", on_gpu=True, flags=amx, cuda_bf16=True) == torch.bfloat16
    assert training_llm_dtype("auto", on_gpu=True, flags=amx, cuda_bf16=False) is None
    assert native_bf16_reason(on_gpu=True, cuda_bf16=True) == "the GPU supports bf16"


def test_explicit_settings_aliases_and_null():
    assert training_llm_dtype("float32") == torch.float32
    assert training_llm_dtype("bfloat16", flags=set()) == torch.bfloat16
    assert training_llm_dtype("bf16") == torch.bfloat16  # SpeechBrain's --precision names
    assert training_llm_dtype("fp32") == torch.float32
    assert training_llm_dtype(None) is None


def test_auto_leaves_a_spec_built_in_another_dtype():
    """A float16 spec is not rounded into bf16's shorter mantissa; a bf16 one stays."""
    for built in (torch.float16, torch.bfloat16):
        assert training_llm_dtype("auto", flags={"amx_bf16"}, built=built) is None
    with pytest.raises(ValueError, match="train_llm_dtype 'fp8' is not one of auto, "
                                         "float32, bfloat16, float16 or null"):
        training_llm_dtype("fp8")


@pytest.mark.parametrize("pack_rows", [True, False])
def test_bf16_frozen_llm_keeps_lora_in_float32_and_gives_the_same_loss_and_gradients(
        tiny_models, audio_batch, pack_rows):
    torch.manual_seed(0)
    reference = load_spec(tiny_models, pack_rows=pack_rows)["model"].eval()
    cast = load_spec(tiny_models, pack_rows=pack_rows)["model"].eval()
    cast.load_state_dict(reference.state_dict())
    count = cast_frozen_parameters(cast.llm, torch.bfloat16)
    assert count > 0
    for name, parameter in cast.llm.named_parameters():
        expected = torch.float32 if parameter.requires_grad else torch.bfloat16
        assert parameter.dtype == expected, name
    assert any("lora" in n for n, p in cast.llm.named_parameters() if p.requires_grad)
    # the rest of the model (encoders, mixture, adapter) is untouched
    assert all(p.dtype == torch.float32 for n, p in cast.named_parameters()
               if not n.startswith("llm."))
    losses, grads = [], []
    for model in (reference, cast):
        model.zero_grad()
        out = model(*audio_batch)
        (out.next_token_loss + 0.1 * out.mowe_loss).backward()
        losses.append(out.next_token_loss.item())
        grads.append(torch.cat([p.grad.flatten() for n, p in model.named_parameters()
                                if p.requires_grad and "lora_B" in n]))
    assert torch.isfinite(grads[1]).all() and grads[1].dtype == torch.float32
    assert losses[1] == pytest.approx(losses[0], rel=0.02)
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0).item()
    assert cosine > 0.98, cosine
    # a second cast changes nothing; a cast back restores float32 compute
    assert cast_frozen_parameters(cast.llm, torch.bfloat16) == 0
    assert cast_frozen_parameters(cast.llm, torch.float32) == count


class RunOptions(dict):
    """Stands in for SpeechBrain's RunOptions (``get`` by key)."""


def frozen_llm_model():
    """A model whose ``llm`` has one frozen float32 weight and one trainable one."""
    from types import SimpleNamespace

    llm = torch.nn.Linear(2, 2)
    llm.weight.requires_grad_(False)
    return SimpleNamespace(llm=llm)


def test_train_py_refuses_a_bad_train_llm_dtype_in_one_line():
    train = load_train_module()
    with pytest.raises(SystemExit, match="^error: train_llm_dtype 'fp8' is not one of"):
        train.llm_training_dtype({"train_llm_dtype": "fp8", "model": frozen_llm_model()},
                                 RunOptions(device="cpu"))


def test_train_py_decides_auto_for_the_device_it_will_train_on(monkeypatch):
    import speechbrain as sb

    train = load_train_module()
    hparams = {"train_llm_dtype": "auto", "model": frozen_llm_model()}
    dtype, why = train.llm_training_dtype(hparams, RunOptions(device="cpu"))
    reason = native_bf16_reason(on_gpu=False)
    assert dtype == (torch.bfloat16 if reason else None)
    assert why == "train_llm_dtype auto: " + (reason or "no native bf16 on this CPU")
    # no --device: SpeechBrain's Brain takes a GPU where there is one, so auto asks it
    monkeypatch.setattr(sb.utils.distributed, "infer_device", lambda: "cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dtype, why = train.llm_training_dtype(hparams, RunOptions(device=None))
    assert dtype is None and why == "train_llm_dtype auto: no native bf16 on this GPU"
    # fp16 autocast: auto does not bring bf16 weights into it
    dtype, why = train.llm_training_dtype(hparams, RunOptions(device="cpu",
                                                              precision="fp16"))
    assert dtype is None and "fp16 autocast" in why
    dtype, why = train.llm_training_dtype({"train_llm_dtype": None,
                                           "model": frozen_llm_model()},
                                          RunOptions(device="cpu"))
    assert dtype is None and why == "train_llm_dtype null"
