"""Speech from espeak-ng, resampled to 16 kHz mono float32.

Example
-------
>>> audio = speak("hello world")  # doctest: +SKIP
"""

import io
import shutil
import subprocess

import numpy as np

SAMPLE_RATE = 16000
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-us+f3", "en-gb+m3", "en-us+m7"]

# The free-form corpus's voices (mowe.synth.corpus STYLES): an accent + an espeak-ng
# variant (`espeak-ng --voices=variant`). The held-out variants speak test clips only,
# so a test score is on voices no training clip had.
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc"]
TRAIN_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "klatt", "klatt2",
                  "klatt4", "klatt6", "Andy", "david", "max", "paul", "steph", "linda", "john"]
HELD_OUT_VARIANTS = ["m7", "m8", "f4", "f5", "klatt3", "klatt5", "Alicia", "robert", "edward"]

# Emotion carried by prosody only (pitch level, speed, loudness, word gaps); the words
# are random sentences, so a model must listen to *how* it is said.
EMOTIONS = {
    "neutral": {"pitch": 45, "speed": 155, "amplitude": 100, "gap": 0},
    "happy": {"pitch": 80, "speed": 195, "amplitude": 140, "gap": 0},
    "sad": {"pitch": 15, "speed": 105, "amplitude": 60, "gap": 4},
    "angry": {"pitch": 55, "speed": 210, "amplitude": 190, "gap": 0},
}


class SpeechSynthesisError(RuntimeError):
    """espeak-ng is missing or failed; the message says how to fix it."""


def speak(text, voice="en-us", speed=150, pitch=50, amplitude=100, gap=0):
    """Synthesize ``text`` with espeak-ng; return 16 kHz mono float32 samples."""
    import soundfile
    import torch
    import torchaudio

    if shutil.which("espeak-ng") is None:
        raise SpeechSynthesisError("espeak-ng is not installed: run tools/install.sh as root "
                                   "or `apt-get install espeak-ng`")
    command = ["espeak-ng", "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)),
               "-a", str(int(amplitude)), "-g", str(int(gap)), "--stdout", text]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise SpeechSynthesisError(f"espeak-ng failed on {text!r} with voice {voice}: "
                                   f"{result.stderr.decode(errors='replace').strip()}")
    audio, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    signal = torchaudio.functional.resample(torch.from_numpy(audio), rate, SAMPLE_RATE)
    return signal.numpy().astype(np.float32)


def random_voice(rng):
    """A voice and its speed/pitch for neutral read speech."""
    return {"voice": VOICES[int(rng.integers(len(VOICES)))],
            "speed": int(rng.integers(130, 181)), "pitch": int(rng.integers(30, 71))}


def variant_voice(rng, split):
    """An accent + variant voice and its speed/pitch: a held-out variant for the test
    split, a training variant otherwise."""
    variants = HELD_OUT_VARIANTS if split == "test" else TRAIN_VARIANTS
    return {"voice": f"{ACCENTS[int(rng.integers(len(ACCENTS)))]}+"
                     f"{variants[int(rng.integers(len(variants)))]}",
            "speed": int(rng.integers(120, 201)), "pitch": int(rng.integers(20, 81))}


def emotional_voice(emotion, rng):
    """espeak-ng settings for ``emotion`` with a random voice and some jitter."""
    preset = EMOTIONS[emotion]
    return {"voice": VOICES[int(rng.integers(len(VOICES)))],
            "speed": preset["speed"] + int(rng.integers(-12, 13)),
            "pitch": int(np.clip(preset["pitch"] + rng.integers(-8, 9), 0, 99)),
            "amplitude": preset["amplitude"] + int(rng.integers(-10, 11)),
            "gap": preset["gap"]}
