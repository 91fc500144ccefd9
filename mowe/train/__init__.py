"""Training: SpeechBrain's Brain for the AudioLLM, checkpoints, resuming, precision, logging."""
