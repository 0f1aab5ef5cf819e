"""Time every registry attack of obscrowd_lib.attacks on this CPU at 512x512: forward and forward+backward.

The photo is skimage's astronaut (512x512, from the scikit-image registry artifact). Forward runs
under ``torch.no_grad``; forward+backward (differentiable attacks only) takes the gradient of the
mean output w.r.t. the input pixels, the price per step of optimising through the attack. Attacks
whose weights are absent (the diffusers editors here) are listed as skipped. Prints a table and
writes JSON.

    .venv/bin/python benchmarks/attacks.py [--out PATH] [--attacks a,b,...] [--repeats N] [--size PX] [--threads N]

The machine is shared: the JSON records the load average before and after and the process CPU
time next to the wall time; read timings with them.
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

from obscrowd_lib import artifacts, attacks, zoo


def photo(side: int) -> torch.Tensor:
    """(1, 3, side, side) in [0, 1]: skimage's astronaut, resized to ``side`` if it is not 512."""
    img = Image.open(artifacts.fetch("scikit-image") / "skimage" / "data" / "astronaut.png").convert("RGB")
    if img.size != (side, side):
        img = img.resize((side, side), Image.BICUBIC)
    return attacks.from_uint8([np.asarray(img)], torch.zeros(1))


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall time and median process CPU time (all threads) of ``fn()`` over ``repeats`` runs, seconds."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def bench(name: str, x: torch.Tensor, repeats: int, device: str) -> dict:
    spec = attacks.ATTACKS[name]
    row: dict = {"attack": name, "kind": spec.kind, "differentiable": spec.differentiable}
    missing = [n for n in spec.needs if not zoo.is_available(n)]
    if missing:
        return {**row, "skipped": f"weights absent: {', '.join(missing)}"}
    t = time.perf_counter()
    a = attacks.make_attack(name, device=device)
    row["load_s"] = round(time.perf_counter() - t, 3)
    with torch.no_grad():  # warm-up (oneDNN primitive creation, lazy imports) on a small crop
        a(x[..., :64, :64].contiguous())

    def forward():
        with torch.no_grad():
            return a(x)

    def forward_backward():
        xg = x.clone().requires_grad_(True)
        a(xg).mean().backward()
        assert xg.grad is not None and torch.isfinite(xg.grad).all()

    out = forward()
    row["mad_vs_photo"] = round(float((out - x).abs().mean()), 5)
    fwd = timed(forward, repeats)
    row.update(forward_s=round(fwd[0], 3), forward_cpu_s=round(fwd[1], 3))
    if spec.differentiable:
        fb = timed(forward_backward, repeats)
        row.update(forward_backward_s=round(fb[0], 3), forward_backward_cpu_s=round(fb[1], 3))
    row["peak_rss_gb_so_far"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    print(f"  {name}: done", flush=True)
    return row


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/attacks.json", help="JSON file to write")
    ap.add_argument("--attacks", default=",".join(attacks.ATTACKS), help="comma-separated registry names")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    ap.add_argument("--size", type=int, default=512, help="photo side in pixels")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    names = [n for n in args.attacks.split(",") if n]
    unknown = [n for n in names if n not in attacks.ATTACKS]
    if unknown:
        ap.error(f"unknown attack(s) {unknown}; known: {', '.join(attacks.ATTACKS)}")
    if args.threads:
        torch.set_num_threads(args.threads)

    x = photo(args.size).to(args.device)
    load_before = os.getloadavg()
    rows = [bench(n, x, args.repeats, args.device) for n in names]
    load_after = os.getloadavg()

    print(f"\nattacks on a {args.size}x{args.size} photo, {torch.get_num_threads()} torch thread(s), "
          f"median of {args.repeats}")
    print(f"{'attack':<30} {'diff':>4} {'forward s':>10} {'fwd+bwd s':>10} {'fwd CPU s':>10} {'f+b CPU s':>10} "
          f"{'MAD':>8}  note")
    for r in rows:
        if "skipped" in r:
            print(f"{r['attack']:<30} {'yes' if r['differentiable'] else 'no':>4} {'':>10} {'':>10} {'':>10} {'':>10} "
                  f"{'':>8}  skipped: {r['skipped']}")
            continue
        print(f"{r['attack']:<30} {'yes' if r['differentiable'] else 'no':>4} {_fmt(r['forward_s']):>10} "
              f"{_fmt(r.get('forward_backward_s')):>10} {_fmt(r['forward_cpu_s']):>10} "
              f"{_fmt(r.get('forward_backward_cpu_s')):>10} {r['mad_vs_photo']:>8.4f}")
    print("wall s = elapsed time; CPU s = process CPU time over all threads (less sensitive to other load); "
          "MAD = mean |attacked - photo|")
    print(f"load average 1/5/15 min: before {load_before}, after {load_after}")

    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "device": args.device},
        "size": args.size, "repeats": args.repeats,
        "load_average_before": load_before, "load_average_after": load_after, "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
