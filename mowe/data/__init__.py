"""Data: manifests, audio loading and SpeechBrain dynamic-item datasets."""

from mowe.data.audio import AudioError, load_audio
from mowe.data.manifest import ManifestError, make_dataset, read_manifest

__all__ = ["AudioError", "load_audio", "ManifestError", "make_dataset", "read_manifest"]
