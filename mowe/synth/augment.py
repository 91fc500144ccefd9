"""Acoustic variety for synthetic training clips: additive noise and reverberation.

Noise goes through SpeechBrain's ``AddNoise`` lobe (its SNR scaling and RMS matching)
with white noise drawn from the item's own random generator, so a corpus stays a
function of its seed. Reverberation is sox's ``reverb`` effect (Freeverb; sox is
installed with espeak-ng): SpeechBrain's ``AddReverb`` needs a file of recorded room
impulse responses, which no offline package ships.

Example
-------
>>> import numpy as np
>>> clean = np.sin(np.linspace(0, 2000, 16000)).astype("float32")
>>> noisy = add_noise(clean, 10, np.random.default_rng(0))
>>> noisy.shape == clean.shape and not np.allclose(noisy, clean)
True
"""

import shutil
import subprocess

import numpy as np

SAMPLE_RATE = 16000
SNRS_DB = (20, 10, 5)
# sox reverb: reverberance %, HF damping %, room scale % (small room to hall)
ROOMS = ((30, 50, 40), (50, 50, 70), (70, 30, 100))


class AugmentationError(RuntimeError):
    """sox is missing or failed; the message says how to fix it."""


def add_noise(audio, snr_db, rng):
    """``audio`` (float32 samples) mixed with white noise at ``snr_db`` by SpeechBrain's
    ``AddNoise`` (its definition: the clean part is scaled by ``1 - 1 / (10^(snr/20) + 1)``,
    the noise to the remaining share of the clip's RMS), the noise drawn from ``rng``."""
    import torch
    from speechbrain.augment.time_domain import AddNoise

    noise = torch.from_numpy(rng.standard_normal(len(audio)).astype(np.float32))
    lobe = AddNoise(snr_low=snr_db, snr_high=snr_db,
                    noise_funct=lambda like: noise.reshape(like.shape))
    clip = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).unsqueeze(0)
    return lobe(clip, torch.ones(1))[0].numpy()


def reverberate(audio, room):
    """``audio`` through sox's reverb with ``room`` = (reverberance, damping, scale) %;
    the clip keeps its length (sox cuts the tail at the end of the input)."""
    if shutil.which("sox") is None:
        raise AugmentationError("sox is not installed: run tools/install.sh as root or "
                                "`apt-get install sox`")
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-r", str(SAMPLE_RATE), "-c", "1"]
    command = ["sox", *raw, "-", *raw, "-", "reverb", *(str(v) for v in room)]
    result = subprocess.run(command, input=np.asarray(audio, dtype=np.float32).tobytes(),
                            capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise AugmentationError(f"sox reverb {room} failed: "
                                f"{result.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(result.stdout, dtype=np.float32).copy()


def augment(audio, rng):
    """Noise, reverberation or both, chosen with ``rng``; returns ``(audio, label)``
    where ``label`` says what was done (``"reverb 50/50/70 + noise 10 dB"``)."""
    kind = ("noise", "reverb", "both")[int(rng.integers(3))]
    labels = []
    if kind in ("reverb", "both"):
        room = ROOMS[int(rng.integers(len(ROOMS)))]
        audio = reverberate(audio, room)
        labels.append("reverb " + "/".join(str(v) for v in room))
    if kind in ("noise", "both"):
        snr = SNRS_DB[int(rng.integers(len(SNRS_DB)))]
        audio = add_noise(audio, snr, rng)
        labels.append(f"noise {snr} dB")
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0.99:  # keep the 16-bit wav unclipped
        audio = audio * (0.99 / peak)
    return audio.astype(np.float32), " + ".join(labels)
