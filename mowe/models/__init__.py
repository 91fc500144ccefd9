"""The model: routers, the weak-encoder mixture, encoders, adapters, the LLM and the AudioLLM."""
