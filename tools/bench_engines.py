#!/usr/bin/env python3
"""Milliseconds per U-Net evaluation: ONNX Runtime, PyTorch and our C engine.

    tools/gimp3-env --python python3 tools/bench_engines.py \\
        (--model DIR | --arch cifar10|texture) --size HxW [--batch N] [--threads 2] \\
        [--seconds 3] [--engine build/tests/engine/bench_engine | --cli build/cli/ddpm]

--model takes a diffusers model folder; --arch makes one with random weights
(spec 1.2's cifar10 config, or tools/train.py's DEFAULT_MODEL) in --work.
The model is exported once to ONNX (cached next to it in --work) and run in
onnxruntime with --threads intra-op threads, and in PyTorch (tools/unet_ref.py,
float32) with --threads threads.  --engine runs tests/engine/bench_engine on
the same folder; --cli runs `ddpm bench` instead.  Keep runs short: this
machine is shared with training.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet_ref  # noqa: E402

CIFAR10 = {  # spec 1.2
    "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256], "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
    "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}


def texture_config():
    sys.argv, saved = [sys.argv[0]], sys.argv
    try:
        import train
        return dict(train.DEFAULT_MODEL)
    finally:
        sys.argv = saved


def make_random_model(arch, work):
    path = os.path.join(work, f"random-{arch}")
    if not os.path.exists(os.path.join(path, "diffusion_pytorch_model.safetensors")):
        torch.manual_seed(0)
        cfg = CIFAR10 if arch == "cifar10" else texture_config()
        unet_ref.save_model_dir(unet_ref.UNet2DModel(cfg), path, dtype=torch.float32)
    return path


def timeit(fn, seconds):
    """Median and best wall ms, runs, median process CPU ms per run."""
    fn()  # warm-up
    times, cpu = [], []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < seconds and len(times) < 1000):
        a, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append((time.process_time() - c) * 1e3)
        times.append((time.perf_counter() - a) * 1e3)
    times.sort()
    cpu.sort()
    return times[len(times) // 2], times[0], len(times), cpu[len(cpu) // 2]


def export_onnx(model, path, x, t):
    if os.path.exists(path):
        return
    with torch.no_grad():
        torch.onnx.export(model, (x, t), path, input_names=["x", "t"], output_names=["eps"],
                          opset_version=17, dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "t": {0: "n"},
                                                          "eps": {0: "n", 2: "h", 3: "w"}}, dynamo=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="diffusers model folder")
    src.add_argument("--arch", choices=["cifar10", "texture"], help="random weights of this architecture")
    ap.add_argument("--size", required=True, help="HxW")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing budget per engine")
    ap.add_argument("--work", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                   ".scratch", "bench"), help="random models and ONNX files")
    ap.add_argument("--engine", help="path of tests/engine/bench_engine")
    ap.add_argument("--cli", help="path of the ddpm CLI (runs `ddpm bench`)")
    ap.add_argument("--skip", default="", help="comma-separated engines to skip: ort,torch")
    a = ap.parse_args()

    H, W = (int(v) for v in a.size.lower().split("x"))
    os.makedirs(a.work, exist_ok=True)
    path = a.model or make_random_model(a.arch, a.work)
    model = unet_ref.load_model_dir(path).eval()
    nparam = sum(p.numel() for p in model.parameters())
    print(f"{path}: {nparam / 1e6:.2f} M parameters, batch {a.batch} of {H}x{W}, {a.threads} threads "
          f"(a training job may share the CPU: figures are pessimistic)")

    torch.manual_seed(1)
    x = torch.randn(a.batch, model.config["in_channels"], H, W)
    t = torch.full((a.batch,), 500.0)
    skip = set(a.skip.split(","))
    results = {}

    if "ort" not in skip:
        import onnxruntime as ort
        key = hashlib.sha1(open(os.path.join(path, "config.json"), "rb").read() +
                           os.path.abspath(path).encode()).hexdigest()[:10]
        onnx_path = os.path.join(a.work, f"unet-{key}.onnx")
        export_onnx(model, onnx_path, x, t)
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy(), "t": t.numpy()}
        with torch.no_grad():
            ref = model(x, t).numpy()
        out = sess.run(None, feed)[0]
        err = float(np.abs(out - ref).max() / np.abs(ref).max())
        results["onnxruntime " + ort.__version__] = timeit(lambda: sess.run(None, feed), a.seconds) + (err,)

    if "torch" not in skip:
        torch.set_num_threads(a.threads)
        with torch.inference_mode():
            results["pytorch " + torch.__version__] = timeit(lambda: model(x, t), a.seconds) + (0.0,)

    for name, (med, best, n, cpu, err) in results.items():
        print(f"  {name:28s} median {med:9.2f} ms/eval   best {best:9.2f}   cpu {cpu:9.2f}   ({n} runs, "
              f"rel. diff to torch {err:.1e})")

    if a.engine or a.cli:
        if a.engine:
            cmd = [a.engine, path, f"{H}x{W}", str(a.batch), str(a.threads), str(a.seconds)]
        else:  # `ddpm bench` takes WxH
            cmd = [a.cli, "bench", "--model", path, "--size", f"{W}x{H}", "--batch", str(a.batch),
                   "--threads", str(a.threads), "--iters", str(max(3, int(a.seconds * 5)))]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = (out.stdout + out.stderr).strip()
        m = (re.search(r"median ([0-9.]+) ms, best ([0-9.]+) ms", line) or
             re.search(r"median\s+([0-9.]+) ms per evaluation.*?min\s+([0-9.]+) ms", line, re.S))
        c = re.search(r"cpu median ([0-9.]+) ms", line)
        if m:
            print(f"  {'gimp-ddpm C engine':28s} median {float(m.group(1)):9.2f} ms/eval   best "
                  f"{float(m.group(2)):9.2f}   cpu {float(c.group(1)) if c else float('nan'):9.2f}")
        print("  " + line.replace("\n", "\n  "))


if __name__ == "__main__":
    main()
