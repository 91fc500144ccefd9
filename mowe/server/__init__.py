"""OpenAI-compatible HTTP serving of a trained MoWE model (``python -m mowe.serve``).

:mod:`~mowe.server.protocol` validates chat-completions requests with audio input,
:mod:`~mowe.server.batching` batches concurrent requests, :mod:`~mowe.server.app` is the
HTTP server.
"""
