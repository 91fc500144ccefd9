"""Utilities: atomic output files, the HTTP server base, tiny test models, the self-check."""
