"""Training throughput under load: torch's default threads, one thread, passive OpenMP waiting and kit's
choice (kit.train.threads), on a quiet machine and with busy processes beside it, side by side in one run.

Each measurement is its own subprocess (OpenMP reads OMP_WAIT_POLICY / GOMP_SPINCOUNT when torch loads): an
efficientnet_b0 (timm, pretrained false) train step at 32 px, batch 32, SGD, timed over a few seconds after
warm-up steps. The busy scenario starts `--busy` processes spinning in pure Python beside it (what DataLoader
workers or another `kit train` do to the cores). Rounds interleave the configurations so each comparison is
side by side; before each measurement the script prints os.getloadavg() and the cores the other processes kept
busy (/proc/stat sampled for 0.5 s). Prints img/s per configuration and scenario (median over rounds), and
ratios against the one-thread rate and torch's default in the same scenario.

Run: .venv/bin/python bench/bench_threads.py [--rounds 2] [--seconds 6] [--busy 2] [--configs default,one,...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> environment set before torch loads in the child; "kit" lets kit.train.threads decide
CONFIGS: dict[str, dict[str, str]] = {
    "default": {},
    "one": {"OMP_NUM_THREADS": "1"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin10k": {"GOMP_SPINCOUNT": "10000"},  # shorter spin-waits: explored, not better than one thread
    "spin100k": {"GOMP_SPINCOUNT": "100000"},
    "kit": {},
}


def child(config: str, seconds: float, batch: int, px: int) -> None:
    """One measurement: print {"img_s", "threads", "line"} as JSON on the last stdout line."""
    line, poll = "", None
    if config == "kit":
        from kit.train.threads import Rechecker, configure_threads

        plan = configure_threads()  # as `kit train` starts: sample the machine, set torch's threads
        line, poll = plan.describe(), Rechecker(plan).poll  # and re-check while training, as kit train does
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, px, px), torch.randint(0, 10, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    model.train()
    for _ in range(3):
        step()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        step()
        n += 1
        if poll is not None:
            poll()
    img_s = n * batch / (time.perf_counter() - t0)
    print(json.dumps({"img_s": img_s, "threads": torch.get_num_threads(), "line": line}))


def others_busy(interval: float = 0.5) -> float:
    """Busy cores as a fresh process sees them (the busy processes are this script's children, which
    kit.train.threads counts as its own)."""
    code = f"from kit.train.threads import sample_others_busy; print(sample_others_busy({interval}))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout)


def measure(config: str, seconds: float, batch: int, px: int) -> dict[str, object]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KIT_THREADS")
    }
    env.update(CONFIGS[config])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--child", config, "--seconds", str(seconds), "--batch", str(batch)]
    cmd += ["--px", str(px)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{config} failed:\n{done.stdout}\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def start_busy(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_busy(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def paired(values: list[float], base: list[float] | None) -> float:
    """The median over rounds of value / base measured in the same round (nan without a base)."""
    if not base:
        return float("nan")
    return statistics.median(v / b for v, b in zip(values, base, strict=True))


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement")
    ap.add_argument(
        "--busy", type=int, default=2, help="busy processes beside training in the loaded scenario"
    )
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--px", type=int, default=32)
    ap.add_argument("--configs", default="default,one,passive,kit", help=f"comma list of {','.join(CONFIGS)}")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.seconds, args.batch, args.px)
        return
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    scenarios = {"quiet": 0, f"busy{args.busy}": args.busy}
    print(
        f"efficientnet_b0 train step, {args.px} px, batch {args.batch}; cores {len(os.sched_getaffinity(0))}"
    )
    results: dict[tuple[str, str], list[float]] = {}
    kit_lines: dict[str, set[str]] = {}
    for r in range(args.rounds):
        for scen, n_busy in scenarios.items():
            procs = start_busy(n_busy)
            try:
                time.sleep(1.0 if n_busy else 0.0)
                order = configs if r % 2 == 0 else configs[::-1]  # alternate the order between rounds
                for c in order:
                    before = f"load {load()}, others busy {others_busy():.2f} cores"
                    res = measure(c, args.seconds, args.batch, args.px)
                    img_s = float(res["img_s"])  # type: ignore[arg-type]
                    results.setdefault((scen, c), []).append(img_s)
                    if res["line"]:
                        kit_lines.setdefault(scen, set()).add(str(res["line"]))
                    print(
                        f"round {r} {scen:7s} {c:9s} {img_s:7.1f} img/s  threads {res['threads']}  ({before})",
                        flush=True,
                    )
            finally:
                stop_busy(procs)
    print(f"\nmedian img/s over {args.rounds} rounds; /one and /def: median of the same round's ratios")
    print(f"load after: {load()}")
    head = f"{'config':10s}" + "".join(f"{s:>12s} {'/one':>6s} {'/def':>6s}" for s in scenarios)
    print(head)
    for c in configs:
        row = f"{c:10s}"
        for s in scenarios:
            v = results[(s, c)]
            ratios = [paired(v, results.get((s, base))) for base in ("one", "default")]
            row += f"{statistics.median(v):12.1f} {ratios[0]:6.2f} {ratios[1]:6.2f}"
        print(row)
    for s, lines in kit_lines.items():
        print(f"kit's choice ({s}): {'; '.join(sorted(lines))}")


if __name__ == "__main__":
    main()
