"""Synthetic sound scenes with questions (AQA) and captions (AC).

A scene is 1-4 sound events in sequence (tones, sweeps, noise bursts, click trains,
hum) separated by silences, optionally over a quiet background. Every event has a
description used in captions and answers.
"""

import numpy as np

SAMPLE_RATE = 16000
EVENT_KINDS = ["tone", "sweep", "noise", "clicks", "hum"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five"]
KIND_NAMES = {"tone": "beep", "sweep": "sweep", "noise": "burst of noise", "clicks": "clicking",
              "hum": "hum"}


def _fade(audio, seconds=0.01):
    ramp = min(len(audio) // 2, int(seconds * SAMPLE_RATE))
    if ramp:
        window = np.linspace(0.0, 1.0, ramp)
        audio[:ramp] *= window
        audio[-ramp:] *= window[::-1]
    return audio


def make_event(kind, rng):
    """One event: (audio, description dict)."""
    duration = float(rng.uniform(0.3, 0.8))
    t = np.arange(int(duration * SAMPLE_RATE)) / SAMPLE_RATE
    level = float(rng.uniform(0.2, 0.5))
    info = {"kind": kind}
    if kind == "tone":
        high = bool(rng.integers(2))
        frequency = rng.uniform(1200, 2400) if high else rng.uniform(200, 450)
        audio = np.sin(2 * np.pi * frequency * t)
        info.update(pitch="high" if high else "low", name=f"{'high' if high else 'low'} beep")
    elif kind == "sweep":
        rising = bool(rng.integers(2))
        low, high = rng.uniform(200, 500), rng.uniform(1500, 3000)
        start, stop = (low, high) if rising else (high, low)
        phase = 2 * np.pi * (start * t + (stop - start) * t ** 2 / (2 * duration))
        audio = np.sin(phase)
        info.update(direction="rising" if rising else "falling",
                    name=f"{'rising' if rising else 'falling'} sweep")
    elif kind == "noise":
        audio = rng.standard_normal(len(t)) * 0.5
        info.update(name="burst of noise")
    elif kind == "clicks":
        audio = np.zeros(len(t))
        rate = rng.uniform(5, 15)
        for start in np.arange(0, duration, 1.0 / rate):
            index = int(start * SAMPLE_RATE)
            audio[index:index + 40] = np.hanning(80)[40:][: len(audio[index:index + 40])]
        info.update(name="clicking")
    elif kind == "hum":
        base = 50.0 if rng.integers(2) else 60.0
        audio = sum(np.sin(2 * np.pi * base * k * t) / k for k in (1, 2, 3))
        info.update(name="low hum")
    else:
        raise ValueError(f"unknown event kind {kind}")
    return _fade(level * audio / max(np.abs(audio).max(), 1e-6)).astype(np.float32), info


def make_scene(rng):
    """A scene: (audio, list of event infos, signature string)."""
    count = int(rng.integers(1, 5))
    kinds = [EVENT_KINDS[int(rng.integers(len(EVENT_KINDS)))] for _ in range(count)]
    pieces, events = [], []
    for kind in kinds:
        pieces.append(np.zeros(int(rng.uniform(0.1, 0.4) * SAMPLE_RATE), dtype=np.float32))
        audio, info = make_event(kind, rng)
        pieces.append(audio)
        events.append(info)
    pieces.append(np.zeros(int(rng.uniform(0.1, 0.3) * SAMPLE_RATE), dtype=np.float32))
    audio = np.concatenate(pieces)
    audio += (rng.standard_normal(len(audio)) * 0.003).astype(np.float32)
    signature = "|".join(e["name"] for e in events) + f"|{len(audio)}"
    return audio, events, signature


def question(events, rng):
    """An AQA question about the scene with a yes/no or one-word answer."""
    kinds = [e["kind"] for e in events]
    options = ["count", "presence"]
    if len(events) >= 2 and events[0]["kind"] != events[-1]["kind"]:
        options.append("order")
    if "tone" in kinds:
        options.append("pitch")
    choice = options[int(rng.integers(len(options)))]
    if choice == "count":
        return "How many sound events are there?", NUMBER_WORDS[len(events)]
    if choice == "presence":
        # present or absent with equal odds, so "yes" and "no" are balanced
        absent = [k for k in EVENT_KINDS if k not in kinds]
        pool = sorted(set(kinds)) if (rng.integers(2) or not absent) else absent
        kind = pool[int(rng.integers(len(pool)))]
        return f"Is there a {KIND_NAMES[kind]} in the recording?", \
            "yes" if kind in kinds else "no"
    if choice == "order":
        first, last = events[0], events[-1]
        pair = [KIND_NAMES[first["kind"]], KIND_NAMES[last["kind"]]]
        if rng.integers(2):
            pair.reverse()
        return f"Which comes first, the {pair[0]} or the {pair[1]}?", KIND_NAMES[first["kind"]]
    tone = next(e for e in events if e["kind"] == "tone")
    return "Is the beep high or low?", tone["pitch"]


def caption(events, rng):
    """A caption of the scene, in one of several phrasings."""
    names = [e["name"] for e in events]
    if len(names) == 1:
        forms = ["a {0} is heard", "a single {0}", "there is a {0}"]
        return forms[int(rng.integers(len(forms)))].format(names[0])
    listed = ", then a ".join(names)
    forms = [f"a {listed}", f"{NUMBER_WORDS[len(names)]} sounds: a {listed}",
             f"first a {names[0]} and finally a {names[-1]}"]
    return forms[int(rng.integers(len(forms)))]
