"""Offline provisioning of pretrained models: conversions of the bundled small models."""
