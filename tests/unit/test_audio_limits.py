"""Audio is checked before it is decoded (mowe/data/audio.py decode_audio): bombs of each
kind are refused within seconds and with bounded memory, by one function that training,
validation, the command line and the servers share."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from conftest import REPO
from mowe.data.audio import AudioError, decode_audio, load_audio, read_audio_bytes

ENV = dict(os.environ, PYTHONPATH=REPO)


def flac_of_silence(path, seconds):
    """A long FLAC of digital silence: tiny on disk, huge once decoded."""
    block = np.zeros(16000 * 60, dtype=np.int16)
    with soundfile.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16", format="FLAC") as out:
        for _ in range(int(seconds // 60)):
            out.write(block)
    return path


def lying_flac(path, samples=2 ** 36 - 1):
    """A short FLAC whose STREAMINFO header claims ``samples`` samples."""
    soundfile.write(str(path), np.zeros(160, dtype=np.int16), 16000, format="FLAC")
    data = bytearray(path.read_bytes())
    # STREAMINFO starts at byte 8; total samples: the low 36 bits of bytes 21..25
    packed = int.from_bytes(data[21:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | samples
    data[21:26] = packed.to_bytes(5, "big")
    path.write_bytes(bytes(data))
    return path


def wav_with_rate(path, rate, samples=16000):
    soundfile.write(str(path), np.zeros(samples, dtype=np.int16), rate, subtype="PCM_16")
    return path


def peak_rss_mb(code):
    """Run ``code`` in a fresh interpreter; its peak resident memory (MB) and stdout."""
    wrapper = (code + "\nimport resource\n"
               "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
    result = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True,
                            env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    rss = int(result.stdout.strip().splitlines()[-1].split()[1])
    return rss, result.stdout


def test_an_hour_of_flac_is_refused_from_its_header_with_bounded_memory(tmp_path):
    path = flac_of_silence(tmp_path / "hour.flac", 3600)
    assert path.stat().st_size < 2_000_000
    code = (f"from mowe.data.audio import decode_audio, AudioError\n"
            f"import time; start = time.time()\n"
            f"try:\n    decode_audio({str(path)!r}, max_seconds=30)\n"
            f"except AudioError as error:\n    print('REFUSED', error)\n"
            f"print('SECONDS', time.time() - start)\n")
    baseline, _ = peak_rss_mb("import mowe.data.audio")
    rss, out = peak_rss_mb(code)
    assert "REFUSED" in out and "lasts 3600.0 s; at most 30 s" in out
    assert float(out.split("SECONDS")[1].split()[0]) < 5
    assert rss - baseline < 100, f"decoding grew memory by {rss - baseline} MB"


def test_a_header_claiming_2_to_the_36_samples_is_refused(tmp_path):
    path = lying_flac(tmp_path / "liar.flac")
    assert path.stat().st_size < 2000
    start = time.time()
    with pytest.raises(AudioError, match="at most"):
        decode_audio(str(path), max_seconds=30)
    with pytest.raises(AudioError, match="at most 3600 s"):  # no limit given: an hour
        load_audio(str(path))
    with pytest.raises(AudioError):
        read_audio_bytes(path.read_bytes(), max_seconds=30)
    assert time.time() - start < 5


def test_sample_rate_and_channel_limits(tmp_path):
    with pytest.raises(AudioError, match="1 Hz; at least 8000 Hz"):
        decode_audio(str(wav_with_rate(tmp_path / "one.wav", 1, samples=30)))
    with pytest.raises(AudioError, match="at least 8000"):
        load_audio(str(wav_with_rate(tmp_path / "low.wav", 4000)))
    assert decode_audio(str(wav_with_rate(tmp_path / "ok.wav", 8000))).numel() == 32000
    from mowe.data.audio import waveform_to_mono

    with pytest.raises(AudioError, match="at least 8000"):
        waveform_to_mono(np.zeros(10), 1)
    with pytest.raises(AudioError, match="at most 2 s"):
        waveform_to_mono(np.zeros(48000), 16000, max_seconds=2)


def test_ffmpeg_output_is_bounded_and_its_errors_short(tmp_path):
    # AAC in ADTS: a format soundfile does not read, so ffmpeg decodes it
    long_aac = tmp_path / "long.aac"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "anullsrc=r=16000:cl=mono", "-t", "900", "-b:a", "16k", str(long_aac)],
                   check=True, timeout=120)
    # the header path cannot read it:
    from mowe.data.audio import read_header

    assert read_header(str(long_aac)) is None
    start = time.time()
    with pytest.raises(AudioError, match="lasts more than 30 s"):
        read_audio_bytes(long_aac.read_bytes(), max_seconds=30)
    assert time.time() - start < 10
    short = tmp_path / "short.aac"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=f=440:r=16000", "-t", "2", str(short)], check=True, timeout=60)
    assert abs(decode_audio(str(short), max_seconds=30).numel() - 32000) < 2000
    with pytest.raises(AudioError, match="cannot read") as error:
        read_audio_bytes(b"\x00garbage" * 100000, max_seconds=30)
    assert len(str(error.value)) < 600


def test_validation_drops_and_counts_what_loading_refuses(tmp_path):
    good = wav_with_rate(tmp_path / "good.wav", 16000)
    low = wav_with_rate(tmp_path / "low.wav", 2000, samples=2000)
    liar = lying_flac(tmp_path / "liar.flac")
    bad = np.zeros(16000, dtype=np.float32)
    bad[5] = np.inf
    soundfile.write(str(tmp_path / "inf.wav"), bad, 16000, subtype="FLOAT")
    entries = {name: {"wav": str(path), "duration": 1.0, "task": "asr",
                      "instruction": "Transcribe.", "answer": "x"}
               for name, path in (("good", good), ("low", low), ("liar", liar),
                                  ("inf", tmp_path / "inf.wav"))}
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps(entries))
    result = subprocess.run([sys.executable, os.path.join(REPO, "recipes", "validate_data.py"),
                             "--manifests", str(manifest), "--out_dir", str(tmp_path / "out")],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    kept = json.loads((tmp_path / "out" / "train.json").read_text())
    assert list(kept) == ["good"]
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    text = json.dumps(report)
    assert "at least 8000 Hz" in text and "at most 3600 s" in text and "infinite" in text
