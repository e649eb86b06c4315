"""Give a trained UNet2DModel one more ResnetBlock2D per block, without changing what it computes.

    python3 tools/deepen_model.py IN_DIR OUT_DIR [--seed S]

layers_per_block L becomes L + 1.  Each new block starts as the identity, so the deeper network predicts exactly
what the trained one does and training goes on from there instead of from scratch (the idea of Net2DeeperNet,
Chen et al. 2016, for residual blocks):

- down blocks: the new resnet comes last, with conv2 = 0, so its output is its input (x + conv2(...) = x).  Its
  output is pushed as a skip like every resnet's, and the downsampler now reads it: the same tensor as before.
- up blocks: the new resnet goes second, with conv2 = 0 and a 1x1 shortcut [I | 0] that passes the current
  features through and ignores its skip.  Up resnets pop the skips in reverse order, so the first one now reads
  the new down resnet's output (equal to the old last resnet's, which it read before), the new one reads the old
  last resnet's and ignores it, and each later one reads what it read before.

Its other weights (conv1, norms, time projection) keep PyTorch's default initialisation; they start to matter once
conv2 moves away from zero.  training_state.json is copied, so `train.py --init-from OUT_DIR` continues the step
count and hours of IN_DIR."""
import argparse
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_ref import Conv, UNet2DModel, load_model_dir, save_model_dir  # noqa: E402


def identity_resnet(r):
    """Make ResnetBlock2D r pass its input through: conv2 = 0, and a 1x1 shortcut, if it has one, that copies the
    first input channels (an up block's current features, ahead of its skip) and drops the rest."""
    with torch.no_grad():
        r.conv2.weight.zero_()
        r.conv2.bias.zero_()
        if r.conv_shortcut is not None:
            cout = r.conv_shortcut.weight.shape[0]
            r.conv_shortcut.weight.zero_()
            r.conv_shortcut.bias.zero_()
            r.conv_shortcut.weight[:, :cout, 0, 0] = torch.eye(cout)


def old_name(key, L):
    """The trained model's name for the deepened model's parameter `key`, or None for a new resnet's: down resnet
    L (the last) and up resnet 1 are new; up resnets 2..L+1 were 1..L."""
    parts = key.split(".")
    if parts[0] not in ("down_blocks", "up_blocks") or parts[2] != "resnets":
        return key
    j = int(parts[3])
    if parts[0] == "down_blocks":
        return key if j < L else None
    if j == 0:
        return key
    return ".".join(parts[:3] + [str(j - 1)] + parts[4:]) if j >= 2 else None


def deepen(old, seed=0):
    torch.manual_seed(seed)
    L = old.config["layers_per_block"]
    cfg = {k: v for k, v in old.config.items() if not k.startswith("_")}
    cfg["layers_per_block"] = L + 1
    new = UNet2DModel(cfg)
    sd, old_sd = new.state_dict(), old.state_dict()
    for key in sd:
        name = old_name(key, L)
        if name is not None:
            sd[key] = old_sd[name].clone()
    new.load_state_dict(sd)
    for b in new.down_blocks:
        identity_resnet(b.resnets[L])
    for b in new.up_blocks:
        identity_resnet(b.resnets[1])
    return new


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    old = load_model_dir(a.src)
    new = deepen(old, a.seed)
    # The proof that nothing changed: the same prediction, zero and circular padding, in float32.
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, old.config["in_channels"], 48, 40, generator=gen)
    t = torch.tensor([999, 10])
    worst = 0.0
    for circular in (False, True):
        Conv.circular = circular
        with torch.no_grad():
            worst = max(worst, (new(x, t) - old(x, t)).abs().max().item())
    Conv.circular = False
    if worst > 1e-4:
        sys.exit(f"deepened model differs from the original by {worst:g}: not written")
    scheduler = json.load(open(os.path.join(a.src, "scheduler_config.json")))
    save_model_dir(new, a.dst, dtype=torch.float16, scheduler=scheduler)
    state = os.path.join(a.src, "training_state.json")
    if os.path.exists(state):
        shutil.copy(state, a.dst)
    n_old = sum(p.numel() for p in old.parameters())
    n_new = sum(p.numel() for p in new.parameters())
    print(f"layers_per_block {old.config['layers_per_block']} -> {new.config['layers_per_block']}: "
          f"{n_old / 1e6:.2f} M -> {n_new / 1e6:.2f} M parameters; largest difference in prediction {worst:.2g}; "
          f"written to {a.dst}")


if __name__ == "__main__":
    main()
