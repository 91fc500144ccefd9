"""Analysis of trained models: routing diagnostics and linear probes."""
