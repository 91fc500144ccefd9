"""MoWE: Mixture of Weak Encoders for multitask audio LLMs.

The library behind the recipes in ``egs/``: routers and routing losses
(:mod:`mowe.routing`), the mixture of weak encoders (:mod:`mowe.mixture`),
audio encoders behind one interface (:mod:`mowe.encoders`), adapters
(:mod:`mowe.adapters`), LLM loading with LoRA (:mod:`mowe.llm`), the AudioLLM
(:mod:`mowe.model`) and its SpeechBrain Brain (:mod:`mowe.brain`).
"""

import os

__version__ = "0.1.0"

# transformers >= 5 with the `kernels` package (which it requires) "kernelizes" every
# model it loads: on a GPU, from_pretrained / train() / eval() fetch kernels from the
# Hugging Face Hub, and offline that fails with "not available in the local cache" deep
# inside model.eval(). The toolkit fetches nothing at run time, so hub kernels are off
# unless the user asks for them (USE_HUB_KERNELS=YES, transformers' own switch).
os.environ.setdefault("USE_HUB_KERNELS", "NO")
