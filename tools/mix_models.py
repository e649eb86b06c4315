"""Interpolate the weights of two model folders of one architecture: a "model soup" across training lines.

    tools/gimp3-env --python python3 tools/mix_models.py A B --alpha 0.5 --out DIR

writes  w = (1 - alpha) w_A + alpha w_B  tensor by tensor, in F16, as a diffusers folder with A's config and
scheduler.  Two lines that both started from one model (every line since session 19 began at the shipped EMA of
step 30,090) usually sit in one basin of the loss, where the straight path between them stays low; whether the
midpoint samples better than either end is known only by measuring it (tools/measure_model.sh).
training_state.json records both parents and alpha, so that a folder says what it is."""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_ref import load_model_dir, save_model_dir  # noqa: E402


def read_json(path):
    with open(path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="model folder A (its config and scheduler are kept)")
    ap.add_argument("b", help="model folder B, of the same architecture")
    ap.add_argument("--alpha", type=float, required=True, help="share of B, in [0, 1]")
    ap.add_argument("--out", required=True, help="model folder to write")
    a = ap.parse_args()
    if not 0 <= a.alpha <= 1:
        sys.exit("--alpha must be in [0, 1]")

    cfg_a, cfg_b = (read_json(os.path.join(d, "config.json")) for d in (a.a, a.b))
    strip = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}   # noqa: E731
    if strip(cfg_a) != strip(cfg_b):
        sys.exit(f"{a.a} and {a.b}: their config.json differ, so their weights cannot be mixed")

    model_a, model_b = load_model_dir(a.a), load_model_dir(a.b)
    sd_b = model_b.state_dict()
    # float64, so that the only rounding is the final one to F16, as train.py --export does
    mixed = {k: ((1 - a.alpha) * v.double() + a.alpha * sd_b[k].double()).float()
             for k, v in model_a.state_dict().items()}
    model_a.load_state_dict(mixed)
    scheduler = read_json(os.path.join(a.a, "scheduler_config.json"))
    save_model_dir(model_a, a.out, dtype=torch.float16, scheduler=scheduler)

    def parent(d):
        p = os.path.join(d, "training_state.json")
        return {"folder": os.path.abspath(d), "training_state": read_json(p) if os.path.exists(p) else None}
    with open(os.path.join(a.out, "training_state.json"), "w") as f:
        json.dump({"weights": "mix", "alpha": a.alpha, "a": parent(a.a), "b": parent(a.b)}, f, indent=2)
        f.write("\n")
    print(f"wrote {a.out}: (1 - {a.alpha}) x {a.a} + {a.alpha} x {a.b}")


if __name__ == "__main__":
    main()
