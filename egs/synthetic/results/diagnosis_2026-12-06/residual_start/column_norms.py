"""RMS of the linear adapter's trained weights on z_base and on z_MoWE, per run.

usage: column_norms.py BASE_DIM MOWE_DIM RUN_DIR... (the run's latest checkpoint)
"""
import glob, sys, torch

base_dim, mowe_dim = int(sys.argv[1]), int(sys.argv[2])
for run in sys.argv[3:]:
    ckpt = sorted(glob.glob(f"{run}/save/CKPT*/model.ckpt"))[-1]
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    w = state["adapter.linear.weight"]
    d = base_dim + mowe_dim
    fpt = w.shape[1] // d
    w = w.view(w.shape[0], fpt, d)
    base, mowe = w[..., :base_dim], w[..., base_dim:]
    rms = lambda t: float(t.pow(2).mean().sqrt())
    print(f"{run}: frames/token {fpt}, rms on z_base {rms(base):.5f}, on z_MoWE {rms(mowe):.5f};"
          f" default init rms {1 / (3 * fpt * d) ** 0.5:.5f}")
