"""The quarter-draw LoRA dropout: same statistics as nn.Dropout, used by the LLM."""

import pytest
import torch
import torch.nn as nn

from mowe.models.dropout import QuarterDrawDropout, use_quarter_draw_dropout
from mowe.models.llm import LanguageModel


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_drop_share_and_mean_match_nn_dropout(p):
    torch.manual_seed(0)
    x = torch.randn(4, 250, 1000)  # 10^6 elements, an odd count of rows per draw
    out = QuarterDrawDropout(p).train()(x)
    dropped = (out == 0).float().mean().item()
    # binomial standard deviation at 10^6 elements is < 5e-4
    assert abs(dropped - p) < 3e-3
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] / (1 - p), rtol=1e-4)
    # unbiased: E[out] = x (checked on ones, where the sample mean is sharp)
    ones = QuarterDrawDropout(p).train()(torch.ones(10 ** 6))
    assert abs(ones.mean().item() - 1.0) < 5e-3


def test_masks_are_seeded_and_vary_between_calls():
    dropout = QuarterDrawDropout(0.3).train()
    x = torch.ones(7, 13)  # numel not a multiple of four
    torch.manual_seed(1)
    first, second = dropout(x), dropout(x)
    torch.manual_seed(1)
    assert torch.equal(dropout(x), first)
    assert not torch.equal(first, second)


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(2)
    x = torch.randn(3, 50, requires_grad=True)
    out = QuarterDrawDropout(0.2).train()(x)
    out.sum().backward()
    expected = (out != 0).float() / (1 - round(0.2 * 65536) / 65536)
    assert torch.allclose(x.grad, expected)


def test_eval_mode_and_degenerate_p_behave_like_nn_dropout():
    x = torch.randn(5, 6)
    assert torch.equal(QuarterDrawDropout(0.5).eval()(x), x)
    assert torch.equal(QuarterDrawDropout(0.0).train()(x), x)
    assert torch.equal(QuarterDrawDropout(1.0).train()(x), torch.zeros_like(x))
    assert QuarterDrawDropout(0.5).train()(torch.empty(0, 3)).shape == (0, 3)


def lora_dropouts(model):
    return [d for name, m in model.named_modules()
            if name.endswith("lora_dropout") for d in m.values()]


def test_language_model_uses_it_for_every_lora_layer(tiny_models):
    fast = LanguageModel(tiny_models["llama"], lora_rank=4, lora_dropout=0.1)
    plain = LanguageModel(tiny_models["llama"], lora_rank=4, lora_dropout=0.1,
                          quarter_draw_dropout=False)
    fast_layers, plain_layers = lora_dropouts(fast), lora_dropouts(plain)
    # two targets (q, v) in each of the tiny LLM's two layers
    assert len(fast_layers) == len(plain_layers) == 4
    assert all(type(d) is QuarterDrawDropout and d.p == 0.1 for d in fast_layers)
    assert all(type(d) is nn.Dropout for d in plain_layers)
    # with dropout off (eval) both models compute the same function
    ids = torch.tensor([[1, 5, 9, 3]])
    fast.eval(), plain.eval()
    assert torch.allclose(fast(input_ids=ids).logits, plain(input_ids=ids).logits)
    # and it trains: a step changes the LoRA weights, with finite gradients
    fast.train()
    fast(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in fast.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    # nothing to replace in a model without LoRA
    assert use_quarter_draw_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1))) == 0
