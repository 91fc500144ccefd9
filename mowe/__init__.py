"""MoWE: Mixture of Weak Encoders for multitask audio LLMs.

The library behind the recipes in ``egs/``: routers and routing losses
(:mod:`mowe.routing`), the mixture of weak encoders (:mod:`mowe.mixture`),
audio encoders behind one interface (:mod:`mowe.encoders`), adapters
(:mod:`mowe.adapters`), LLM loading with LoRA (:mod:`mowe.llm`), the AudioLLM
(:mod:`mowe.model`) and its SpeechBrain Brain (:mod:`mowe.brain`).
"""

__version__ = "0.1.0"
