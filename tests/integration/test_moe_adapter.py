"""The MoE-Adapter (issue 16): routing math on a toy, sparse dispatch equal to the dense
reference, and the balancing loss that un-collapses a gate."""

import pytest
import torch

from mowe.models.adapters import LinearDownsampleAdapter
from mowe.models.moe_adapter import MoEAdapter, parameter_counts, switch_balance_loss
from recipe_runs import setup  # noqa: F401  (fixture: tiny models and data)


def toy_adapter(**kwargs):
    settings = dict(input_dim=2, output_dim=3, num_tokens=2, frames_per_token=1,
                    num_routed_experts=2, num_shared_experts=0, top_k=1)
    settings.update(kwargs)
    return MoEAdapter(**settings)


def test_two_expert_toy_by_hand():
    torch.manual_seed(0)
    adapter = toy_adapter()
    with torch.no_grad():  # gate logits = (x0, -x0): token a -> expert 0, token b -> 1
        adapter.gate.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        adapter.gate.bias.zero_()
    feats = torch.tensor([[[1.0, 5.0], [-2.0, 3.0]]])
    probs, chosen, weights = adapter.route(feats[0])
    p_a = torch.sigmoid(torch.tensor(2.0))  # softmax(1, -1)[0]
    p_b = torch.sigmoid(torch.tensor(4.0))  # softmax(-2, 2)[1]
    assert torch.allclose(probs, torch.tensor([[p_a, 1 - p_a], [1 - p_b, p_b]]))
    assert chosen.tolist() == [[0], [1]]
    assert torch.allclose(weights[:, 0], torch.stack([p_a, p_b]))
    tokens, lens, aux = adapter(feats, torch.tensor([2]))
    expected = torch.stack([p_a * adapter.routed[0](feats[0, 0]),
                            p_b * adapter.routed[1](feats[0, 1])])
    assert torch.allclose(tokens[0], expected, atol=1e-6)
    # f = (1/2, 1/2), P = ((p_a + 1 - p_b) / 2, (1 - p_a + p_b) / 2): L = 2 * sum f P = 1
    assert float(aux["balance_loss"].detach()) == pytest.approx(1.0)
    assert aux["expert_counts"].tolist() == [[1, 1]]


def test_balance_loss_of_a_collapsed_gate_is_the_number_of_experts():
    probs = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 8)
    loss = switch_balance_loss(probs, torch.zeros(8, 1, dtype=torch.long), 4)
    assert float(loss) == pytest.approx(4.0)


def test_top2_chooses_the_two_largest_gate_values():
    adapter = toy_adapter(num_routed_experts=3, top_k=2)
    with torch.no_grad():
        adapter.gate.weight.zero_()
        adapter.gate.bias.copy_(torch.tensor([0.1, 2.0, 1.0]))
    _, chosen, weights = adapter.route(torch.randn(4, 2))
    assert chosen.tolist() == [[1, 2]] * 4
    assert torch.allclose(weights.sum(dim=1), weights[:, 0] + weights[:, 1])


@pytest.mark.parametrize("top_k,shared", [(1, 1), (2, 2), (3, 0)])
def test_sparse_dispatch_equals_dense_reference_in_values_and_gradients(top_k, shared):
    torch.manual_seed(1)
    adapter = MoEAdapter(input_dim=5, output_dim=7, num_tokens=6, frames_per_token=3,
                         num_routed_experts=4, num_shared_experts=shared, top_k=top_k)
    feats = torch.randn(3, 40, 5, requires_grad=True)
    lens = torch.tensor([40, 25, 9])
    sparse, _, aux = adapter(feats, lens)
    dense = adapter.dense_reference(feats, lens)
    torch.testing.assert_close(sparse, dense)
    target = torch.randn_like(sparse)
    grads = []
    for output in (sparse, dense):
        adapter.zero_grad()
        feats.grad = None
        (output * target).sum().backward(retain_graph=True)
        grads.append([feats.grad.clone()] + [p.grad.clone() if p.grad is not None
                                             else torch.zeros_like(p)
                                             for p in adapter.parameters()])
    for sparse_grad, dense_grad in zip(*grads):
        torch.testing.assert_close(sparse_grad, dense_grad)
    assert int(aux["expert_counts"].sum()) == 3 * 6 * top_k  # dropless


def test_each_expert_runs_once_on_its_tokens_only():
    torch.manual_seed(2)
    adapter = MoEAdapter(input_dim=4, output_dim=3, num_tokens=8, frames_per_token=2,
                         num_routed_experts=4, num_shared_experts=1, top_k=1)
    seen = {}
    for index, expert in enumerate(adapter.routed):
        expert.register_forward_hook(
            lambda module, inputs, output, index=index: seen.setdefault(index, []).append(
                inputs[0].shape[0]))
    _, _, aux = adapter(torch.randn(2, 30, 4), torch.tensor([30, 30]))
    counts = aux["expert_counts"].sum(dim=0).tolist()
    assert {i: sum(v) for i, v in seen.items()} == {i: c for i, c in enumerate(counts) if c}
    assert all(len(calls) == 1 for calls in seen.values())


def test_balance_loss_moves_a_collapsed_gate_towards_balance():
    torch.manual_seed(3)
    adapter = MoEAdapter(input_dim=4, output_dim=3, num_tokens=16, frames_per_token=2,
                         num_routed_experts=4, num_shared_experts=0, top_k=1)
    with torch.no_grad():
        adapter.gate.weight.mul_(0.1)
        adapter.gate.bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))  # all to expert 0
    feats, lens = torch.randn(8, 32, 4), torch.full((8,), 32)
    optimizer = torch.optim.SGD(adapter.gate.parameters(), lr=2.0)

    def share_of_expert_0():
        _, _, aux = adapter(feats, lens)
        counts = aux["expert_counts"].sum(dim=0).float()
        return float(counts[0] / counts.sum()), aux["balance_loss"]

    def measured():
        share, loss = share_of_expert_0()
        return share, float(loss.detach())

    before, loss = measured()
    assert before == 1.0 and loss > 3.0
    for _ in range(20):
        optimizer.zero_grad()
        share_of_expert_0()[1].backward()
        optimizer.step()
    after, loss = measured()
    assert after < 0.5 and loss < 1.5


def test_default_active_parameters_match_the_linear_adapter():
    linear = LinearDownsampleAdapter(input_dim=128 + 256, output_dim=512, num_tokens=25,
                                     frames_per_token=24)
    moe = MoEAdapter(input_dim=128 + 256, output_dim=512, num_tokens=25,
                     frames_per_token=24, num_routed_experts=4, num_shared_experts=1, top_k=1)
    linear_active, linear_total = parameter_counts(linear)
    moe_active, moe_total = parameter_counts(moe)
    assert linear_active == linear_total
    assert abs(moe_active - linear_active) / linear_active < 0.02
    assert moe_total > 2 * moe_active


def test_bad_top_k_is_refused():
    with pytest.raises(ValueError, match="top_k must be between 1 and num_routed_experts"):
        toy_adapter(top_k=3)


# ---------------------------------------------------------------- diagnostics
def test_cosine_matrix_has_unit_diagonal_and_is_symmetric():
    from mowe.analysis.diagnostics import cosine_matrix

    generator = torch.Generator().manual_seed(0)
    tasks, matrix = cosine_matrix({t: torch.randn(50, generator=generator)
                                   for t in ("asr", "er", "ac")})
    assert tasks == ["ac", "asr", "er"]
    torch.testing.assert_close(matrix.diagonal(), torch.ones(3, dtype=matrix.dtype))
    torch.testing.assert_close(matrix, matrix.T)


def test_opposite_targets_on_a_shared_weight_give_a_negative_cosine():
    from mowe.analysis.diagnostics import cosine_matrix, task_gradients

    shared = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        shared.weight.zero_()
    inputs = torch.tensor([[1.0, 0.5], [0.8, 0.2]])
    batches = {"up": [(inputs, torch.ones(2, 1))], "down": [(inputs, -torch.ones(2, 1))],
               "up_too": [(inputs * 2, 2 * torch.ones(2, 1))]}
    gradients = task_gradients(list(shared.parameters()), batches,
                               lambda batch: ((shared(batch[0]) - batch[1]) ** 2).mean())
    tasks, matrix = cosine_matrix(gradients)
    cos = dict(zip(((a, b) for a in tasks for b in tasks), matrix.reshape(-1).tolist()))
    assert cos[("down", "up")] < -0.99 and cos[("up", "up_too")] > 0.9


# ------------------------------------------------------------ in the AudioLLM
@pytest.mark.parametrize("mixture", [True, False])
def test_yaml_moe_adapter_trains_with_and_without_mowe(tiny_models, audio_batch, mixture):
    from conftest import load_spec
    from mowe.models.moe_adapter import MoEAdapter
    from conftest import make_brain, padded_batch

    torch.manual_seed(0)
    extra = {} if mixture else {"mixture": None}
    model = load_spec(tiny_models, adapter_kind="moe", num_routed_experts=3, **extra)["model"]
    assert isinstance(model.adapter, MoEAdapter) and (model.mixture is not None) == mixture
    wav, wav_lens, instructions, answers = audio_batch
    out = model(wav, wav_lens, instructions, answers)
    assert out.adapter_loss is not None and out.expert_counts.shape == (3, 3)
    brain = make_brain(model, moe_balance_weight=0.5)
    brain.init_optimizers()
    gate_before = model.adapter.gate.weight.detach().clone()
    loss = brain.fit_batch(padded_batch(audio_batch))
    assert torch.isfinite(loss)
    parts = brain.loss_parts[__import__("speechbrain").Stage.TRAIN].averages()
    assert parts["moe_balance"] >= 1.0 - 1e-6  # E * sum f P >= 1
    assert not torch.equal(gate_before, model.adapter.gate.weight)
    usage = brain.expert_usage[__import__("speechbrain").Stage.TRAIN]
    assert sorted(usage.counts) == ["aqa", "asr", "er"]


def test_linear_adapter_has_no_balance_loss(tiny_models, audio_batch):
    from conftest import load_spec

    model = load_spec(tiny_models)["model"]
    wav, wav_lens, instructions, answers = audio_batch
    out = model(wav, wav_lens, instructions, answers)
    assert out.adapter_loss is None and out.expert_counts is None


def test_recipe_trains_decodes_and_diagnoses_the_moe_adapter(tmp_path):
    """train.py / decode.py with adapter_kind moe on tiny models, then the gradient
    conflict diagnostic on the trained checkpoint, for the MoE and the dense adapter."""
    import json
    import os
    import subprocess
    import sys

    import numpy as np
    import soundfile

    from mowe.utils.tiny_models import make_tiny_pretrained_dir

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = os.path.join(repo, "egs", "synthetic", "conf", "train.yaml")
    pretrained = tmp_path / "pretrained"
    make_tiny_pretrained_dir(str(pretrained))
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    tasks = [("asr", "Transcribe.", "hello world"), ("er", "Emotion?", "happy"),
             ("aqa", "How many beeps?", "two")]
    for split, count in (("train", 6), ("valid", 6), ("test", 3)):
        entries = {}
        for index in range(count):
            task, instruction, answer = tasks[index % 3]
            wav = str(data / f"{split}_{index}.wav")
            soundfile.write(wav, (0.1 * rng.standard_normal(4000)).astype("float32"), 16000)
            entries[f"{split}_{index}"] = {"wav": wav, "duration": 0.25, "task": task,
                                           "instruction": instruction, "answer": answer}
        (data / f"{split}.json").write_text(json.dumps(entries))

    def run(script, *args):
        result = subprocess.run([sys.executable, *script, *map(str, args)], cwd=repo,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        return result.stdout + result.stderr

    for system, spec in (("moe", "{mixture: null, adapter_kind: moe}"),
                         ("dense", "{mixture: null}")):
        out = tmp_path / system
        common = [config, f"--output_folder={out}", f"--data_folder={data}",
                  f"--pretrained_dir={pretrained}", "--number_of_epochs=1", "--batch_size=2",
                  "--global_batch_size=2", "--max_new_tokens=3", f"--spec={spec}"]
        log = run([os.path.join(repo, "recipes", "train.py")], *common)
        if system == "moe":
            assert "moe_balance" in (out / "train_log.txt").read_text() + log
            usage = json.loads((out / "expert_usage_valid.json").read_text())
            assert sorted(usage) == ["aqa", "asr", "er"]
            assert sum(sum(v.values()) for v in usage.values()) == 6 * 25  # tokens x top-1
        run([os.path.join(repo, "recipes", "decode.py")], *common)
        assert len((out / "hyps.jsonl").read_text().splitlines()) == 3
        printed = run(["-m", "mowe.analysis.diagnostics", "grad_conflict", "--config", config,
                       "--checkpoint", out / "save", "--batches_per_task", "1",
                       "--batch_size", "2", *common[1:]])
        record = json.loads((out / "grad_conflict.json").read_text())
        assert record["tasks"] == ["aqa", "asr", "er"]
        matrix = torch.tensor(record["cosine"])
        torch.testing.assert_close(matrix, matrix.T)
        assert matrix.diagonal().tolist() == [1.0, 1.0, 1.0]
        assert (out / "grad_conflict.png").stat().st_size > 1000
        kind = "MoEAdapter" if system == "moe" else "LinearDownsampleAdapter"
        assert f"{kind} shared parameters" in printed


def test_moe_adapter_trains_under_ddp_with_two_processes(setup, tmp_path):  # noqa: F811
    """2 CPU processes (gloo) train the MoE adapter with MoWE: experts idle on one process
    are allowed, every step is taken, the losses are finite and the checkpoint loads."""
    import os
    import subprocess
    import sys

    from recipe_runs import REPO, command, final_weights, trace

    out = tmp_path / "ddp"
    cmd = command("train.py", setup, out, "--number_of_epochs=1", "--batch_size=1",
                  "--global_batch_size=2", "--ckpt_interval_steps=0",
                  "--distributed_backend=gloo", "--spec={adapter_kind: moe}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node=2"] + cmd[1:]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [row["optimizer_step"] for row in trace(out)]
    assert steps == list(range(1, 7))  # 12 clips / global batch 2
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in trace(out))
    weights = final_weights(out)
    assert any(key.startswith("adapter.routed.") for key in weights)
