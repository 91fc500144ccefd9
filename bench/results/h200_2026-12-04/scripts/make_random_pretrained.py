"""Random-weight copies of the bundled models (same configs and tokenizers) for the
device run: the real weights (98 MB GGUF + Whisper) do not fit the 64 MiB carry."""
import os, shutil, sys
import torch
import transformers

src, dst = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
for name in sorted(os.listdir(src)):
    config = transformers.AutoConfig.from_pretrained(os.path.join(src, name))
    cls = getattr(transformers, config.architectures[0])
    model = cls._from_config(config)
    out = os.path.join(dst, name)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    for f in os.listdir(os.path.join(src, name)):
        if f != "config.json":
            shutil.copy(os.path.join(src, name, f), out)
    print(name, sum(p.numel() for p in model.parameters()) / 1e6, "M parameters, random")
