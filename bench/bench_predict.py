"""`kit predict` speed: images/s of one timm member versus a plain timm inference loop, in the same run.

1. A temp competition of real PNGs (3 classes; train images at --src px, --n test images), one timm member
   (default resnet18, pretrained: false, --size px, 2 folds, 1 epoch, views plain + hflip) trained by kit.
   Then, alternating, `kit predict --member` (the real CLI in this process: decode, both fold models, both
   views, the CSV) and a plain loop a user would write: PIL decode (EXIF, RGB, resize with the model's
   filter) into one tensor, normalise, then per fold `timm.create_model` + `load_state_dict(best.pt)`,
   forward each batch and its hflip, mean of fold logits, mean over views of softmax. Same images, weights,
   views, batch size and torch thread count; the two probability arrays are compared. Ratio = kit / plain
   images/s (goal >= 0.9 on the CPU), the median of --rounds.
2. With --demo DIR (a folder `kit demo` trained): `kit predict ensembles/all.yaml` over its test images, the
   CSV under a temp folder (nothing is written into DIR).

Run: `.venv/bin/python bench/bench_predict.py [--model resnet18] [--size 96] [--n 256] [--threads 2]
     [--demo /tmp/demo_new]`
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import yaml

CLASSES = ["red", "green", "blue"]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def make_competition(root: Path, n_train: int, n_test: int, src: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
    train, test = [], []
    for i in range(n_train + n_test):
        c = i % 3
        a = rng.integers(0, 90, (src, src, 3), dtype=np.uint8)
        a[:, :, c] = a[:, :, c] // 2 + 150
        if i < n_train:
            Image.fromarray(a).save(root / f"train/{i:04d}.png")
            train.append(f"{i:04d},train/{i:04d}.png,{CLASSES[c]}")
        else:
            Image.fromarray(a).save(root / f"test/t{i:04d}.png")
            test.append(f"t{i:04d},test/t{i:04d}.png")
    (root / "train.csv").write_text("id,img_path,label\n" + "\n".join(train) + "\n")
    (root / "test.csv").write_text("id,img_path\n" + "\n".join(test) + "\n")


def plain_timm(folds: list[Path], files: list[Path], meta: dict, member: dict) -> np.ndarray:
    """What a user would write with timm alone: the same weights, images, views and batch size."""
    import timm
    import torch
    from PIL import Image, ImageOps

    pre, size, batch = meta["preprocess"], member["img_size"], member["batch_size"] * 2
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[pre["interpolation"]]
    pixels = []
    for f in files:
        with Image.open(f) as im:
            pixels.append(
                np.asarray(ImageOps.exif_transpose(im).convert("RGB").resize((size, size), resample))
            )
    x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1) * 255
    std = torch.tensor(pre["std"]).view(1, 3, 1, 1) * 255
    x = (x - mean) / std
    logits = torch.zeros(len(files), 2, len(CLASSES))
    for path in folds:
        model = timm.create_model(
            member["model"], num_classes=len(CLASSES), **(pre.get("model_kwargs") or {})
        )
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
        model.eval()
        with torch.inference_mode():
            for i in range(0, len(files), batch):
                xb = x[i : i + batch]
                logits[i : i + batch] += torch.stack([model(xb), model(xb.flip(3))], dim=1)
    logits /= len(folds)
    return torch.softmax(logits, dim=-1).mean(dim=1).numpy()


def member_ratio(args: argparse.Namespace, tmp: Path) -> None:
    import json

    import torch
    from typer.testing import CliRunner

    import kit
    from kit.cli.app import app

    torch.set_num_threads(args.threads)
    data = tmp / "data"
    make_competition(data, 60, args.n, args.src)
    member = {
        "kind": "timm",
        "model": args.model,
        "pretrained": False,
        "img_size": args.size,
        "epochs": 1,
        "batch_size": 16,
        "tta": ["plain", "hflip"],
        "device": "cpu",
    }
    comp = {"root": str(data), "train": "train.csv", "test": "test.csv", "id_column": "id"}
    comp |= {"image_column": "img_path", "label_column": "label", "metric": "accuracy"}
    cfg_path = tmp / "kit.yaml"
    cfg = {"competition": comp, "folds": {"k": 2, "seed": 0}, "workdir": str(tmp / "work")}
    cfg_path.write_text(yaml.safe_dump(cfg | {"members": {"m": member}}))
    t = time.perf_counter()
    kit.train_members(kit.load_config(cfg_path))
    print(f"trained {args.model} at {args.size} px, 2 folds, 1 epoch in {time.perf_counter() - t:.1f} s")
    meta = json.loads((tmp / "work" / "members" / "m" / "meta.json").read_text())
    run = tmp / "work" / "runs" / "m" / str(meta["run"]["hash"])
    folds = [run / f"fold{f}" / "best.pt" for f in range(2)]
    files = sorted((data / "test").glob("*.png"))
    runner = CliRunner()
    print(
        f"{len(files)} images, views plain + hflip, batch {member['batch_size'] * 2}, {args.threads} threads"
    )
    kit_ips: list[float] = []
    plain_ips: list[float] = []
    kit_cpu: list[float] = []
    plain_cpu: list[float] = []

    def run_kit(r: int) -> tuple[float, float]:
        out = tmp / f"pred{r}.csv"
        argv = ["predict", "--member", "m", "-c", str(cfg_path), "--images", str(data / "test")]
        t, c = time.perf_counter(), time.process_time()
        res = runner.invoke(app, [*argv, "--out", str(out), "--device", "cpu"])
        dt, cpu = time.perf_counter() - t, time.process_time() - c
        assert res.exit_code == 0, res.output
        return dt, cpu

    def run_plain() -> tuple[float, float, np.ndarray]:
        t, c = time.perf_counter(), time.process_time()
        probs = plain_timm(folds, files, meta, member)
        return time.perf_counter() - t, time.process_time() - c, probs

    run_kit(-1), run_plain()  # warm-up: first-call costs (lazy imports, allocator) are not what is measured
    diff = 0.0
    for r in range(args.rounds):
        order = ["kit", "plain"] if r % 2 == 0 else ["plain", "kit"]  # alternate: drifting load hits both
        for which in order:
            if which == "kit":
                dt, cpu = run_kit(r)
                kit_ips.append(len(files) / dt)
                kit_cpu.append(cpu)
                print(
                    f"  round {r}: kit predict {kit_ips[-1]:7.1f} images/s ({dt:.2f} s, {cpu:.2f} CPU s)"
                    f"   load {load()}"
                )
            else:
                dt, cpu, probs = run_plain()
                plain_ips.append(len(files) / dt)
                plain_cpu.append(cpu)
                print(
                    f"  round {r}: plain timm  {plain_ips[-1]:7.1f} images/s ({dt:.2f} s, {cpu:.2f} CPU s)"
                    f"   load {load()}"
                )
        got = np.load(tmp / f"pred{r}.npy")
        diff = max(diff, float(np.abs(got - probs).max()))
        assert diff < 1e-4, f"kit and the plain loop disagree by {diff}"
    k, p = statistics.median(kit_ips), statistics.median(plain_ips)
    print(
        f"median: kit predict {k:.1f} images/s, plain timm {p:.1f} images/s, ratio {k / p:.2f} "
        f"(goal >= 0.9; max |probs diff| {diff:.1e})   load {load()}"
    )
    kc, pc = statistics.median(kit_cpu), statistics.median(plain_cpu)
    print(
        f"median CPU time (all threads; less sensitive to other load): kit {kc:.2f} s, plain {pc:.2f} s, "
        f"ratio plain/kit {pc / kc:.2f}"
    )


def demo_speed(demo: Path, threads: int, tmp: Path) -> None:
    import torch
    from typer.testing import CliRunner

    from kit.cli.app import app

    torch.set_num_threads(threads)
    n = len(list((demo / "data" / "test").iterdir()))
    argv = ["predict", "ensembles/all.yaml", "-c", str(demo / "kit.yaml"), "--images", "data/test"]
    argv += ["--sample", "data/sample_submission.csv", "--out", str(tmp / "demo.csv"), "--device", "cpu"]
    cwd = os.getcwd()
    os.chdir(demo)  # the demo's kit.yaml names its folders relative to it; the CSV goes to tmp
    try:
        t = time.perf_counter()
        res = CliRunner().invoke(app, argv)
        dt = time.perf_counter() - t
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    print(
        f"demo ensemble ({demo}/ensembles/all.yaml): {n} images in {dt:.2f} s, {n / dt:.1f} images/s   load {load()}"
    )
    print(
        "  " + "\n  ".join(line for line in res.output.splitlines() if "images/s" in line or "wrote" in line)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=96, help="img_size of the member")
    ap.add_argument("--src", type=int, default=128, help="size of the PNGs on disk")
    ap.add_argument("--n", type=int, default=256, help="test images")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--demo", type=Path, default=None, help="a trained `kit demo` folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        member_ratio(args, Path(tmp))
        if args.demo is not None:
            demo_speed(args.demo, args.threads, Path(tmp))


if __name__ == "__main__":
    main()
