"""The default corpus's manifests with noise audio of each clip's length (the device
cannot synthesise speech: no espeak-ng; with random model weights only timings count)."""
import json, os, sys
import numpy as np
import soundfile as sf

manifests, data_dir = sys.argv[1], os.path.abspath(sys.argv[2])
rng = np.random.default_rng(0)
os.makedirs(os.path.join(data_dir, "clean"), exist_ok=True)
for name in ("train", "valid", "test"):
    with open(os.path.join(manifests, name + ".json")) as handle:
        clips = json.load(handle)
    for clip_id, clip in clips.items():
        rel = clip["wav"].split("/default_seed1234/", 1)[1]
        clip["wav"] = os.path.join(data_dir, rel)
        os.makedirs(os.path.dirname(clip["wav"]), exist_ok=True)
        samples = int(round(clip["duration"] * 16000))
        sf.write(clip["wav"], (rng.standard_normal(samples) * 0.05).astype(np.float32), 16000,
                 subtype="PCM_16")
    with open(os.path.join(data_dir, "clean", name + ".json"), "w") as handle:
        json.dump(clips, handle, indent=1)
    print(name, len(clips), "clips of noise")
