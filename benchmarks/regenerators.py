"""Time the learned regeneration attacks (ncnn models ported to torch) on this CPU: forward and forward+backward.

Real-ESRGAN x4plus 128 -> 512 px and waifu2x photo (noise 0) 256 -> 512 px, on a resized crop of a
registry sample photo (``obama.jpg`` of face_recognition 1.3.0). Forward runs under ``torch.no_grad``;
forward+backward takes the gradient of the mean output w.r.t. the input pixels (what an attack
optimising through the regenerator pays per step). Prints a table and writes JSON.

    .venv/bin/python benchmarks/regenerators.py [--out PATH] [--models realesrgan,waifu2x] [--repeats N]

The machine is shared: the JSON records the load average before and after, read timings with it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from obscrowd_lib import artifacts
from obscrowd_lib.formats import ncnn

# name -> (loader, input side in px)
MODELS = {
    "realesrgan": (ncnn.load_realesrgan, 128),
    "waifu2x": (lambda device: ncnn.load_waifu2x(device=device, noise=0), 256),
}


def photo(side: int) -> torch.Tensor:
    """(1, 3, side, side) in [0, 1]: a square crop of obama.jpg resized to ``side``."""
    path = artifacts.fetch("face-recognition") / "face_recognition-1.3.0/tests/test_images/obama.jpg"
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, 0, (w - s) // 2 + s, s)).resize((side, side), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall time and median process CPU time (all threads) of ``fn()`` over ``repeats`` runs, in seconds."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def bench(name: str, repeats: int, device: str) -> dict:
    loader, side = MODELS[name]
    model = loader(device=device)
    x = photo(side).to(device)
    with torch.no_grad():  # warm-up (oneDNN primitive creation) on a small input
        model(x[:, :, :24, :24])

    def forward():
        with torch.no_grad():
            return model(x)

    def forward_backward():
        xg = x.clone().requires_grad_(True)
        model(xg).mean().backward()
        assert xg.grad is not None and torch.isfinite(xg.grad).all()

    out_shape = tuple(forward().shape)
    fwd = timed(forward, repeats)
    fwd_bwd = timed(forward_backward, repeats)
    return {"model": name, "input": [side, side], "output": list(out_shape[2:]), "scale": model.scale,
            "forward_s": round(fwd[0], 3), "forward_backward_s": round(fwd_bwd[0], 3),
            "forward_cpu_s": round(fwd[1], 3), "forward_backward_cpu_s": round(fwd_bwd[1], 3),
            "peak_rss_gb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/regenerators.json", help="JSON file to write")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per measurement (median reported)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")

    load_before = os.getloadavg()
    rows = [bench(n, args.repeats, args.device) for n in names]
    load_after = os.getloadavg()

    print(f"{'model':<12} {'input':>9} {'output':>9} {'forward s':>10} {'fwd+bwd s':>10} "
          f"{'fwd CPU s':>10} {'f+b CPU s':>10} {'peak RSS GB':>12}")
    for r in rows:
        print(f"{r['model']:<12} {'x'.join(map(str, r['input'])):>9} {'x'.join(map(str, r['output'])):>9} "
              f"{r['forward_s']:>10.2f} {r['forward_backward_s']:>10.2f} {r['forward_cpu_s']:>10.2f} "
              f"{r['forward_backward_cpu_s']:>10.2f} {r['peak_rss_gb_so_far']:>12.2f}")
    print("wall s = elapsed time; CPU s = process CPU time over all threads (less sensitive to other load)")
    print(f"load average 1/5/15 min: before {load_before}, after {load_after}")

    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "device": args.device},
        "load_average_before": load_before, "load_average_after": load_after,
        "repeats": args.repeats, "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
