"""Tiny random Hugging Face models for tests, smoke checks and benchmarks.

They are written with ``save_pretrained`` to a directory and loaded back through the
same ``from_pretrained`` path as real checkpoints, so everything between the YAML spec
and transformers is exercised without a model hub.

Example
-------
>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> whisper_dir = make_tiny_whisper(folder + "/whisper")
>>> llama_dir = make_tiny_llama(folder + "/llama")
"""

import logging
import os

import torch

logger = logging.getLogger(__name__)

# A small English corpus to train the byte-level BPE of the tiny LLM's tokenizer.
_TOKENIZER_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "transcribe the speech in this audio clip",
    "what emotion does the speaker express neutral joy sadness anger fear surprise",
    "how many tones do you hear in the recording yes no one two three four five",
    "describe the sounds a dog barks while rain falls and a car passes by",
    "answer the question about the spoken passage where did the meeting happen",
    "high low beep noise silence click hum sweep tone music speech",
]

CHAT_TEMPLATE = (
    "<s>{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}"
    "</s>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tokenizer(vocab_size=512):
    """A byte-level BPE tokenizer (any text round-trips) with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_TOKENIZER_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_llama(path, hidden_size=64, num_layers=2, num_heads=4, seed=0, **config):
    """Save a random tiny ``LlamaForCausalLM`` with tokenizer to ``path``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    settings = dict(vocab_size=len(tokenizer), hidden_size=hidden_size,
                    intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                    num_attention_heads=num_heads, num_key_value_heads=num_heads,
                    max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                    tie_word_embeddings=False)
    settings.update(config)
    model = LlamaForCausalLM(LlamaConfig(**settings))
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_tiny_whisper(path, d_model=32, layers=2, heads=2, seed=0, **config):
    """Save a random tiny ``WhisperForConditionalGeneration`` plus feature extractor."""
    from transformers import (WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration)

    torch.manual_seed(seed)
    settings = dict(vocab_size=128, d_model=d_model, encoder_layers=layers,
                    decoder_layers=layers, encoder_attention_heads=heads,
                    decoder_attention_heads=heads, encoder_ffn_dim=2 * d_model,
                    decoder_ffn_dim=2 * d_model, num_mel_bins=80, max_source_positions=1500,
                    max_target_positions=64, pad_token_id=1, bos_token_id=2, eos_token_id=2,
                    decoder_start_token_id=3)
    settings.update(config)
    model = WhisperForConditionalGeneration(WhisperConfig(**settings))
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    WhisperFeatureExtractor(feature_size=settings["num_mel_bins"]).save_pretrained(path)
    return path


def make_scripted_llama(path, replies, steps=400, seed=0):
    """Save a tiny Llama trained to answer given chat prompts with given replies.

    A real model for tests of generation-serving code (e.g. the judge server): for each
    ``prompt -> reply`` pair it learns, by overfitting, to greedily produce ``reply``
    after the chat-templated user ``prompt``.

    Parameters
    ----------
    path : str
        Output folder (model + tokenizer).
    replies : dict
        User prompt -> reply text.
    steps : int
        Upper bound on optimisation steps (training stops once every reply is exact).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    RuntimeError
        If the model did not learn every reply.
    """
    from transformers import LlamaForCausalLM

    make_tiny_llama(path, hidden_size=64, num_layers=2, seed=seed)
    model = LlamaForCausalLM.from_pretrained(path)
    tokenizer = make_tokenizer()
    examples = []
    for prompt, reply in replies.items():
        context = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                add_generation_prompt=True, tokenize=False)
        context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"] + \
            [tokenizer.eos_token_id]
        ids = torch.tensor([context_ids + reply_ids])
        labels = ids.clone()
        labels[0, :len(context_ids)] = -100
        examples.append((torch.tensor([context_ids]), ids, labels, reply))
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def all_exact():
        model.eval()
        with torch.no_grad():
            for context_ids, _, _, reply in examples:
                out = model.generate(context_ids, attention_mask=torch.ones_like(context_ids),
                                     do_sample=False, max_new_tokens=len(reply) + 4,
                                     pad_token_id=tokenizer.pad_token_id)
                if tokenizer.decode(out[0, context_ids.shape[1]:],
                                    skip_special_tokens=True) != reply:
                    model.train()
                    return False
        model.train()
        return True

    model.train()
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        for _, ids, labels, _ in examples:
            model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        if step % 25 == 0 and all_exact():
            logger.info("scripted model learned its replies in %d steps", step)
            break
    else:
        if not all_exact():
            raise RuntimeError(f"the scripted model did not learn its replies in {steps} steps")
    model.save_pretrained(path)
    return path


def make_tiny_causal_lm(path, family="llama", hidden_size=64, num_layers=2, num_heads=4,
                        seed=0):
    """Save a random tiny causal LM of a given family (``llama``, ``mistral``, ``phi3``)
    with the byte-level tokenizer, to stand in for a hub LLM of that family in tests."""
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig,
                              MistralForCausalLM, Phi3Config, Phi3ForCausalLM)

    families = {"llama": (LlamaConfig, LlamaForCausalLM),
                "mistral": (MistralConfig, MistralForCausalLM),
                "phi3": (Phi3Config, Phi3ForCausalLM)}
    if family not in families:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(families)}")
    config_class, model_class = families[family]
    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    config = config_class(vocab_size=len(tokenizer), hidden_size=hidden_size,
                          intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                          num_attention_heads=num_heads, num_key_value_heads=num_heads,
                          max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    os.makedirs(path, exist_ok=True)
    model_class(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_tiny_hubert(path, hidden_size=32, seed=0):
    """Save a random tiny ``HubertModel`` with its feature extractor (a stand-in for
    ``facebook/hubert-base-ls960`` or ``superb/hubert-base-superb-er`` in tests)."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(seed)
    config = HubertConfig(hidden_size=hidden_size, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=2 * hidden_size, conv_dim=(16, 16),
                          conv_kernel=(10, 3), conv_stride=(5, 2),
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    os.makedirs(path, exist_ok=True)
    HubertModel(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor().save_pretrained(path)
    return path


def make_tiny_pretrained_dir(path):
    """A folder laid out like ``python -m mowe provision --out PATH``, holding a tiny
    random Whisper and Llama under the offline models' names (for recipe-level tests).

    Returns
    -------
    str
        ``path``.
    """
    make_tiny_whisper(os.path.join(path, "whisper-tiny.en"))
    make_tiny_llama(os.path.join(path, "smollm2-135m-instruct"), initializer_range=0.3)
    return str(path)
