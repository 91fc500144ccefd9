"""MoWE: Mixture of Weak Encoders for multitask audio LLMs.

The library behind the recipes in ``egs/``: routers and routing losses
(:mod:`mowe.models.routers`), the mixture of weak encoders (:mod:`mowe.models.mixture`),
audio encoders behind one interface (:mod:`mowe.models.encoders`), adapters
(:mod:`mowe.models.adapters`), LLM loading with LoRA (:mod:`mowe.models.llm`), the AudioLLM
(:mod:`mowe.models.audio_llm`) and its SpeechBrain Brain (:mod:`mowe.train.brain`).
"""

import os

__version__ = "0.1.0"

# transformers >= 5 with the `kernels` package (which it requires) "kernelizes" every
# model it loads: on a GPU, from_pretrained / train() / eval() fetch kernels from the
# Hugging Face Hub, and offline that fails with "not available in the local cache" deep
# inside model.eval(). The toolkit fetches nothing at run time, so hub kernels are off
# unless the user asks for them (USE_HUB_KERNELS=YES, transformers' own switch).
os.environ.setdefault("USE_HUB_KERNELS", "NO")
