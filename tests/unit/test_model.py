"""The AudioLLM built from the YAML spec via the real from_pretrained path, and
MoWEBrain training it."""

import json
import os

import pytest
import speechbrain as sb
import torch

from conftest import load_spec, make_brain, noise_manifest, padded_batch
from mowe.train.brain import MoWEBrain
from mowe.models.audio_llm import IGNORE_INDEX


@pytest.fixture(scope="module")
def trained(tiny_models):
    """A model overfitted on the fixed batch by MoWEBrain.fit_batch; and its losses."""
    torch.manual_seed(0)
    hparams = load_spec(tiny_models)
    model = hparams["model"]
    brain = make_brain(model)
    brain.init_optimizers()
    generator = torch.Generator().manual_seed(0)
    wav = torch.randn(3, 16000, generator=generator) * 0.1
    wav_lens = torch.tensor([1.0, 0.6, 0.35])
    batch_data = (wav, wav_lens, ["Transcribe the speech.", "What emotion is expressed?",
                                  "How many tones?"], ["hello world", "joy", "three"])
    batch = padded_batch(batch_data)
    losses = [float(brain.fit_batch(batch)) for _ in range(40)]
    model.eval()
    return model, brain, batch_data, losses


def test_yaml_builds_the_full_model_through_from_pretrained(tiny_models):
    hparams = load_spec(tiny_models)
    model = hparams["model"]
    assert type(model.base_encoder.encoder).__name__ == "WhisperEncoder"
    assert model.mixture.num_encoders == 4 and model.mixture.router_kinds == ["indep", "dep"]
    assert type(model.llm.model).__name__ == "PeftModelForCausalLM"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable)
    assert not any(n.startswith("llm.") and "lora_" not in n for n in trainable), \
        "LLM base weights must be frozen"
    assert any(n.startswith("base_encoder.") for n in trainable)
    assert any(n.startswith("mixture.routers") for n in trainable)


def test_swaps_are_overrides_only(tiny_models):
    baseline = load_spec(tiny_models, mixture=None)["model"]
    assert baseline.mixture is None
    assert baseline.adapter.linear.in_features == 32 * 2  # base features only
    ablation = load_spec(tiny_models, routers=["dep", "dep"], num_weak_encoders=2,
                         dispatch="dense")["model"]
    assert ablation.mixture.router_kinds == ["dep", "dep"]
    assert ablation.mixture.num_encoders == 2 and ablation.mixture.dispatch == "dense"
    conv = load_spec(tiny_models, adapter_kind="conv", conv_adapter_stride=4)
    assert type(conv["model"].adapter).__name__ == "ConvAdapter"
    assert conv["model"].adapter.stride == 4
    assert conv["model"].projection.in_features == 32  # adapter_dim of the tiny spec


def test_a_few_brain_steps_lower_the_loss(trained):
    _, _, _, losses = trained
    assert losses[-1] < 0.5 * losses[0], losses


def test_loss_counts_only_answer_tokens(trained):
    model, _, (wav, wav_lens, instructions, answers), _ = trained
    audio, token_lens, _ = model.encode_audio(wav, wav_lens)
    embeds, mask, labels = model.assemble(audio, token_lens, instructions, answers)
    for row, answer in zip(labels, answers):
        kept = row[row != IGNORE_INDEX].tolist()
        assert kept == model.answer_ids(answer), "labels hold exactly answer + end token"
    logits = model.llm(inputs_embeds=embeds, attention_mask=mask).logits
    shifted = labels[:, 1:]
    answer_positions = shifted != IGNORE_INDEX
    manual = torch.nn.functional.cross_entropy(logits[:, :-1][answer_positions],
                                               shifted[answer_positions])
    out = model(wav, wav_lens, instructions, answers)
    assert out.next_token_loss.item() == pytest.approx(manual.item(), rel=1e-5)
    # Prompt/audio positions carry no label: changing a prompt token's label would
    # change a loss that counted it; with IGNORE_INDEX it cannot.
    everything = torch.nn.functional.cross_entropy(
        logits[:, :-1][mask[:, 1:].bool()],
        torch.where(shifted == IGNORE_INDEX, torch.zeros_like(shifted), shifted)[mask[:, 1:].bool()])
    assert abs(everything.item() - manual.item()) > 1e-3


def test_generate_returns_the_learned_answers(trained):
    model, _, (wav, wav_lens, instructions, answers), _ = trained
    texts = model.generate(wav, wav_lens, instructions, max_new_tokens=8)
    assert all(isinstance(t, str) and t for t in texts), texts
    assert sum(t == a for t, a in zip(texts, answers)) >= 2, texts


def test_batched_generation_equals_one_by_one(trained):
    model, _, (wav, wav_lens, instructions, _), _ = trained
    batched = model.generate(wav, wav_lens, instructions, max_new_tokens=8)
    for i in range(wav.shape[0]):
        length = int(round(float(wav_lens[i]) * wav.shape[1]))
        alone = model.generate(wav[i:i + 1, :length], torch.ones(1), [instructions[i]],
                               max_new_tokens=8)
        assert alone == [batched[i]]


def test_brain_fit_logs_parts_routing_and_saves_small_checkpoints(tiny_models, tmp_path):
    from mowe.data import make_dataset

    torch.manual_seed(0)
    model = load_spec(tiny_models)["model"]
    train = make_dataset(noise_manifest(tmp_path, 6, 0))
    valid = make_dataset(noise_manifest(tmp_path, 4, 1))
    stats_file = tmp_path / "routing.json"
    steps = []
    from mowe.train.dashboards import RunDashboard

    brain = make_brain(model, tmp_path, routing_stats_file=str(stats_file),
                       dashboard=RunDashboard(str(tmp_path / "tensorboard")),
                       lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
                           opt, lambda step: steps.append(step) or 1.0))
    brain.grad_accumulation_factor = 2
    counter = sb.utils.epoch_loop.EpochCounter(1)
    brain.fit(counter, train, valid, train_loader_kwargs={"batch_size": 2},
              valid_loader_kwargs={"batch_size": 2})
    # 3 batches with accumulation 2: the scheduler steps after batches 2 only
    # (SpeechBrain steps when step % factor == 0); plus its initial call.
    assert len(steps) == 2
    for stats in (brain.train_stats,):
        assert {"loss", "next_token", "mowe", "mowe_indep_ent", "mowe_dep_ent",
                "mowe_dep_div"} <= set(stats)
        assert stats["loss"] == pytest.approx(stats["next_token"] + 0.1 * stats["mowe"], rel=0.05)
        # the pre-clipping gradient norm and the share of clipped steps are logged
        assert stats["grad_norm"] > 0 and 0.0 <= stats["clipped"] <= 1.0
    routing = json.loads(stats_file.read_text())
    assert set(routing) == {"asr", "er"}
    # TensorBoard: step loss and lr, the epoch's loss parts, valid metrics, routing shares
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"step/loss", "step/lr", "lr", "loss/train", "next_token/train", "mowe/train",
            "loss/valid"} <= tags, tags
    shares = [t for t in tags if t.startswith("routing/asr/router1/") and t.endswith("/valid")]
    assert shares and sum(events.Scalars(t)[-1].value for t in shares) == pytest.approx(1.0)
    assert sum(routing["asr"]["1"].values()) == 2 and sum(routing["er"]["1"].values()) == 2
    checkpoint = brain.checkpointer.find_checkpoint()
    saved = torch.load(os.path.join(checkpoint.path, "model.ckpt"), weights_only=True)
    assert any("lora_" in key for key in saved)
    assert not any(key.startswith("llm.") and "lora_" not in key for key in saved)
    assert not set(saved) & model.frozen_source_keys()  # nor the frozen base encoder
    # The checkpoint restores the trained weights into a fresh model.
    fresh = load_spec(tiny_models)["model"]
    fresh.load_checkpoint(os.path.join(checkpoint.path, "model.ckpt"))
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_leaves_out_a_tied_lm_head_and_keeps_replaced_frozen_weights(
        tiny_models, tmp_path):
    from mowe.utils.tiny_models import make_tiny_llama

    tied = make_tiny_llama(str(tmp_path / "tied_llama"), tie_word_embeddings=True)
    model = load_spec(tiny_models, llm_source=tied, freeze_base_encoder=True)["model"]
    model.save_checkpoint(tmp_path / "fresh.ckpt")
    saved = torch.load(tmp_path / "fresh.ckpt", weights_only=True)
    frozen = model.frozen_source_keys()
    assert any(key.endswith("lm_head.weight") for key in frozen)  # the tied alias
    assert any(key.startswith("base_encoder.") for key in frozen)
    assert not set(saved) & frozen and any("lora_" in key for key in saved)
    # init_from a run that fine-tuned the base encoder, into a model that freezes it:
    # the fine-tuned weights are not the source's, so later saves keep them.
    tuned = {key: value + 1.0 for key, value in model.state_dict().items()
             if key.startswith("base_encoder.") and key in frozen}
    state = dict(saved, **tuned)
    model.load_trained_state(state, "stage1.ckpt")
    model.save_checkpoint(tmp_path / "stage2.ckpt")
    resumed = load_spec(tiny_models, llm_source=tied, freeze_base_encoder=True)["model"]
    resumed.load_checkpoint(tmp_path / "stage2.ckpt")
    for key, value in tuned.items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert set(tuned) <= set(resumed.trained_state_dict())  # and a packaged model too
    # ... and features cached from the source encoder no longer apply to it
    from mowe.data.precomputed_features import FeatureCacheError

    with pytest.raises(FeatureCacheError, match="use_features=false"):
        resumed.encode_features(torch.zeros(1, 16000), torch.ones(1), base_feats=[None])
    # a checkpoint written before frozen weights were left out holds them unchanged:
    # loading it does not carry them into later saves (nor into a package)
    old_format = load_spec(tiny_models, llm_source=tied, freeze_base_encoder=True)["model"]
    old_format.load_trained_state(old_format.state_dict(), "old.ckpt")
    assert not set(old_format.trained_state_dict()) & frozen
    # a frozen encoder trained from scratch has no source to come back from: it is kept
    small = load_spec(tiny_models, base_encoder_kind="small", freeze_base_encoder=True,
                      num_audio_tokens=4, frames_per_token=2)["model"]
    frozen_small = [key for key, value in small.named_parameters()
                    if key.startswith("base_encoder.") and not value.requires_grad]
    small.save_checkpoint(tmp_path / "small.ckpt")
    assert frozen_small and set(frozen_small) <= set(
        torch.load(tmp_path / "small.ckpt", weights_only=True))


def test_checkpoint_of_another_spec_is_rejected(tiny_models, tmp_path):
    baseline = load_spec(tiny_models, mixture=None)["model"]
    baseline.save_checkpoint(tmp_path / "base.ckpt")
    mowe_model = load_spec(tiny_models)["model"]
    with pytest.raises(RuntimeError, match="does not fit this model spec"):
        mowe_model.load_checkpoint(tmp_path / "base.ckpt")


def test_selfcheck_runs_end_to_end(tmp_path, capsys):
    from mowe.utils.selfcheck import main

    out = tmp_path / "selfcheck"
    argv = ["--out", str(out), "--epochs", "1", "--train_per_task", "4", "--test_per_task", "3"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"pitch", "count"}
    assert all(row["count"] == 3 and 0 <= row["accuracy"] <= 1 for row in results.values())
    assert (out / "routing_stats.json").exists()
    assert "self-check results" in capsys.readouterr().out
    # A rerun resumes from the finished run's checkpoint instead of training again.
    assert main(argv) == 0


def test_brain_mixed_precision_step(tiny_models, audio_batch):
    """SpeechBrain's bf16 autocast path runs the whole model (CPU bf16 here)."""
    model = load_spec(tiny_models)["model"]
    brain = MoWEBrain(modules={"model": model},
                      opt_class=lambda params: torch.optim.Adam(params, lr=1e-3),
                      hparams={}, run_opts={"device": "cpu", "precision": "bf16"})
    brain.init_optimizers()
    before = model.projection.weight.detach().clone()
    loss = brain.fit_batch(padded_batch(audio_batch))
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.projection.weight), "the optimizer stepped"


def test_answer_only_lm_head_gives_the_full_heads_loss_and_gradients(tiny_models,
                                                                      audio_batch):
    """The vocabulary projection on answer positions only (the default) against the
    full head through transformers' own loss: same loss, same gradients."""
    torch.manual_seed(0)
    model = load_spec(tiny_models)["model"]
    model.eval()  # no dropout: both passes see the same network
    assert model.answer_only_lm_head
    model.pack_rows = False  # the head alone (packing: the next test)
    wav, wav_lens, instructions, answers = audio_batch
    answers = ["a much longer answer than the others", "joy", "three"]  # ragged spans
    results = []
    for answer_only in (True, False):
        model.answer_only_lm_head = answer_only
        model.zero_grad()
        loss = model(wav, wav_lens, instructions, answers).next_token_loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()
                 if p.grad is not None}
        results.append((loss.detach(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6)


def test_packed_rows_give_the_padded_rows_loss_and_gradients(tiny_models, audio_batch):
    """The rows packed into one sequence with the prompt prefix once (the default)
    against padded rows: same loss, same gradients (LoRA's included), and the LLM's
    layers really see one sequence of the prefix plus each row's own positions."""
    torch.manual_seed(0)
    model = load_spec(tiny_models)["model"]
    model.eval()  # no dropout: both passes see the same network
    wav, wav_lens, instructions, answers = audio_batch
    answers = ["a much longer answer than the others", "joy", "three"]
    prefix = model.shared_prefix_length(instructions)
    assert prefix == len(model.prompt_ids(instructions[0])[0]) > 0
    assert model.pack_rows  # the default, with transformers' SDPA attention
    first_layer = next(module for name, module in model.llm.named_modules()
                       if name.endswith("layers.0"))
    shapes_seen = []
    first_layer.register_forward_hook(
        lambda module, args, kwargs, output: shapes_seen.append(tuple(
            kwargs.get("hidden_states", args[0] if args else None).shape[:2])),
        with_kwargs=True)
    results = []
    for pack in (True, False):
        model.pack_rows = pack
        model.zero_grad()
        shapes_seen.clear()
        loss = model(wav, wav_lens, instructions, answers).next_token_loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()
                 if p.grad is not None}
        results.append((loss.detach(), grads, list(shapes_seen)))
    (loss_a, grads_a, seen_a), (loss_b, grads_b, seen_b) = results
    audio, token_lens, _ = model.encode_audio(wav, wav_lens)
    _, mask, _ = model.assemble(audio, token_lens, instructions, answers)
    row_lengths = mask.sum(dim=1).tolist()
    assert seen_b == [(len(answers), max(row_lengths))]
    assert seen_a == [(1, prefix + sum(length - prefix for length in row_lengths))]
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    assert any("lora" in name for name in grads_a)
    for name in grads_a:
        # float32 sums in another order: tolerance relative to the tensor's scale
        scale = float(grads_b[name].abs().max())
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4,
                                   atol=1e-4 * scale + 1e-9)


def test_packed_rows_without_a_shared_prefix_give_the_same_loss(tiny_models, audio_batch):
    """Rows whose prefixes differ are packed whole (no prefix shared): same loss."""
    model = load_spec(tiny_models)["model"]
    model.eval()
    wav, wav_lens, instructions, answers = audio_batch
    audio, token_lens, _ = model.encode_audio(wav, wav_lens)
    embeds, mask, labels = model.assemble(audio, token_lens, instructions, answers)
    losses = []
    for pack, shared in ((True, 0), (False, 0)):
        model.pack_rows = pack
        losses.append(model.next_token_loss(embeds, mask, labels, shared).detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)


def test_rows_with_different_prefixes_are_not_shared(tiny_models):
    """A chat template that puts the instruction before the audio gives rows different
    prefixes: nothing is shared, and the loss is still computed."""
    model = load_spec(tiny_models)["model"]
    model.audio_placeholder = "<|mowe_audio|>"
    model.llm.tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'].split('\\n')[-1] }} "
        "{{ m['content'].split('\\n')[0] }}{% endfor %}")
    model._prompt_cache.clear()
    assert model.shared_prefix_length(["Transcribe this.", "What emotion?"]) == 0
    assert model.shared_prefix_length(["Transcribe this.", "Transcribe this."]) > 0
