"""Average a run's weight snapshots into a model folder, with an EMA length chosen afterwards.

    tools/gimp3-env --python python3 tools/posthoc_ema.py --run RUN_DIR --decay 0.999 --out DIR
                                                          [--first STEP] [--last STEP]

train.py keeps one EMA, with a decay fixed before training; which decay gives the best samples is known only by
measuring them.  With `train.py --snapshot-every N` the run keeps the weights themselves every N steps
(RUN_DIR/snapshots/step_NNNNNN.safetensors), and this tool replays the EMA over them:

    ema <- ema + (1 - decay^(s_i - s_{i-1})) (w_i - ema),   starting from the first snapshot,

which is the per-step EMA of `decay` if the weights stood still between snapshots (N much smaller than the EMA's
memory, 1 / (1 - decay) steps).  --decay 1 gives the plain mean of the snapshots in [--first, --last].
The output is a diffusers folder in F16, as train.py --export writes, with the config of the run's checkpoint."""
import argparse
import glob
import json
import os
import re
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import run_prediction  # noqa: E402
from unet_ref import UNet2DModel, save_model_dir  # noqa: E402


def snapshot_steps(run):
    """(step, path) of every snapshot in the run folder, in step order."""
    found = []
    for path in glob.glob(os.path.join(run, "snapshots", "step_*.safetensors")):
        m = re.fullmatch(r"step_(\d+)\.safetensors", os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def replay_ema(snapshots, decay):
    """The EMA of decay per step over the snapshots (see the module's docstring); decay 1 is the running mean."""
    ema, prev = None, None
    for n, (step, path) in enumerate(snapshots, start=1):
        w = load_file(path)
        if ema is None:
            ema = {k: v.double() for k, v in w.items()}
        else:
            if w.keys() != ema.keys():
                sys.exit(f"{path}: its tensors differ from the first snapshot's")
            rate = 1 / n if decay == 1 else 1 - decay ** (step - prev)
            for k in ema:
                ema[k].add_(w[k].double() - ema[k], alpha=rate)
        prev = step
    return {k: v.float() for k, v in ema.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder of train.py, with ckpt.pt and snapshots/")
    ap.add_argument("--decay", type=float, required=True, help="EMA decay per optimiser step (1 = plain mean)")
    ap.add_argument("--first", type=int, default=0, help="first step to average (default: all)")
    ap.add_argument("--last", type=int, default=None, help="last step to average (default: all)")
    ap.add_argument("--out", required=True, help="model folder to write")
    a = ap.parse_args()
    if not 0 < a.decay <= 1:
        sys.exit("--decay must be in (0, 1]")

    snaps = [(s, p) for s, p in snapshot_steps(a.run) if s >= a.first and (a.last is None or s <= a.last)]
    if not snaps:
        sys.exit(f"no snapshots in {a.run}/snapshots within the steps asked for")
    state = torch.load(os.path.join(a.run, "ckpt.pt"), weights_only=False, map_location="cpu")
    model = UNet2DModel(state["config"])
    model.load_state_dict(replay_ema(snaps, a.decay))   # strict: a snapshot of another architecture fails here
    save_model_dir(model, a.out, dtype=torch.float16,
                   scheduler={"variance_type": "fixed_large", "prediction_type": run_prediction(state)})
    with open(os.path.join(a.out, "training_state.json"), "w") as f:
        json.dump({"step": snaps[-1][0], "weights": "posthoc_ema", "decay": a.decay,
                   "snapshots": [snaps[0][0], snaps[-1][0], len(snaps)]}, f, indent=2)
        f.write("\n")
    print(f"averaged {len(snaps)} snapshots, steps {snaps[0][0]}..{snaps[-1][0]}, decay {a.decay}, into {a.out}")


if __name__ == "__main__":
    main()
