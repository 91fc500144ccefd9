"""Load a causal LM (hub id, local directory or GGUF file) and add LoRA with peft.

Nothing here downloads on its own: a local directory is opened with
``local_files_only=True``; a hub id is passed to ``from_pretrained`` untouched, so it
works for users with hub access (or a filled cache) and fails clearly without.

Example (YAML)
--------------
::

    llm: !new:mowe.models.llm.LanguageModel
        source: !ref <llm_source>
        lora_rank: 8
        lora_targets: [q_proj, v_proj]
"""

import logging
import os

import torch
import torch.nn as nn

from mowe.models.dropout import use_quarter_draw_dropout
from mowe.provision.model_sources import check_local_source

logger = logging.getLogger(__name__)

# Used when a tokenizer ships no chat template (e.g. a base model): one user turn,
# then the answer.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% elif message['role'] == 'system' %}{{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def _resolve_source(source, gguf_file):
    """Validate a local source early, with a message that says what is wrong."""
    kwargs = {}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    if check_local_source(source, "LLM"):
        if gguf_file and not os.path.isfile(os.path.join(source, gguf_file)):
            raise FileNotFoundError(f"GGUF file {gguf_file!r} not found in {source!r}")
        kwargs["local_files_only"] = True
    return kwargs


class LanguageModel(nn.Module):
    """A causal LM with its tokenizer, base weights frozen, LoRA adapters trainable.

    Arguments
    ---------
    source : str
        Hub id, local directory, or directory holding ``gguf_file``.
    gguf_file : str, optional
        GGUF file name inside ``source`` (dequantised by transformers on load).
    dtype : str
        Weight dtype: ``float32``, ``bfloat16`` or ``float16``.
    use_lora : bool
        Add LoRA adapters (otherwise the LLM stays entirely frozen).
    lora_rank, lora_alpha, lora_dropout : int, int, float
        LoRA hyper-parameters.
    lora_targets : list of str
        Module names to adapt (e.g. ``[q_proj, v_proj]``).
    freeze : bool
        Freeze the base weights (the paper trains LoRA only).
    chat_template : str, optional
        Jinja chat template overriding the tokenizer's.
    quarter_draw_dropout : bool
        LoRA dropout through :class:`mowe.models.dropout.QuarterDrawDropout` (same drop
        probability, a quarter of the random draws on the CPU: a faster CPU training step,
        see bench/RESULTS.md); ``False``: peft's ``nn.Dropout``.
    """

    def __init__(self, source, gguf_file=None, dtype="float32", use_lora=True, lora_rank=8,
                 lora_alpha=16, lora_dropout=0.05, lora_targets=("q_proj", "v_proj"),
                 freeze=True, chat_template=None, quarter_draw_dropout=True):
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = _resolve_source(source, gguf_file)
        torch_dtype = getattr(torch, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if chat_template:
            self.tokenizer.chat_template = chat_template
        elif not getattr(self.tokenizer, "chat_template", None):
            logger.warning("tokenizer of %s has no chat template; using a plain one", source)
            self.tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
        if freeze:
            for parameter in model.parameters():
                parameter.requires_grad_(False)
        if use_lora:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                target_modules=list(lora_targets), task_type="CAUSAL_LM")
            model = get_peft_model(model, config)
            if quarter_draw_dropout:
                use_quarter_draw_dropout(model)
        self.model = model
        self.hidden_size = model.config.hidden_size

    @property
    def embed_tokens(self):
        """The LLM's input embedding table."""
        return self.model.get_input_embeddings()

    def forward(self, **kwargs):
        """Call the wrapped (peft) model."""
        return self.model(**kwargs)

    def generate(self, **kwargs):
        """Greedy/beam generation through transformers' ``generate``."""
        return self.model.generate(**kwargs)
