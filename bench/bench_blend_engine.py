"""A whole `kit blend` of a large workspace, with the default spec (what `kit init` writes: ensembles/all.yaml).

Builds a synthetic competition once (N train rows, long-tailed over C classes, tiny identical PNG files so the
workspace fingerprints real files; M members with OOF and test logits over two TTA views, saved as `kit train`
saves them), then times the real CLI, `kit blend ensembles/all.yaml`, in fresh processes.

`--engines auto engine numpy` (for a kit that has more than one scoring engine): `auto` is kit's own choice (numba
wherever it imports and pays), `engine` keeps numba only behind the scoring Engine (kit.blend.kernels) and
forces post-processing's class-bias search to numpy, `numpy` forces every scorer to the numpy engine (the
kernel modules report themselves unavailable). Each run's table.csv (seconds per blender row) is kept beside
the workspace, and the numba cache is checked for kernels compiled during a run (a cold run is flagged).
`--kit DIR` runs another checkout's kit (e.g. a `git archive` of an older commit) beside this one, on the same
workspace: `--kit /tmp/orig --kit .` times both, alternating, `--rounds` times each.

Run: `python bench/bench_blend_engine.py --n 200000 [--engines auto numpy] [--kit DIR ...] [--out DIR]`
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf0000000301010018dd8db00000000049454e44ae426082"
)
FORCE = {
    "auto": "",
    "engine": "import kit.blend.postprocess as p\np.kernels_ready = lambda *a, **k: False\n",
    "numpy": (
        "import kit.blend.scoring as s, kit.blend.postprocess as p\n"
        "s.kernels_ready = p.kernels_ready = lambda *a, **k: False\n"
    ),
}


def numba_cache(kit_dir: Path) -> dict[str, float]:
    """kit_dir's compiled blend kernels in kit's numba cache (numba's index files) and their modification times.
    numba names the folder after the source folder: <cache>/blend_<sha1 of its absolute path>."""
    root = Path(os.environ.get("NUMBA_CACHE_DIR") or Path.home() / ".cache" / "kit" / "numba")
    folder = root / f"blend_{hashlib.sha1(str(kit_dir / 'kit' / 'blend').encode()).hexdigest()}"
    return {f.name: f.stat().st_mtime for f in folder.glob("*.nbi")}


def build(out: Path, n: int, n_test: int, C: int, M: int, seed: int) -> Path:
    """out/kit.yaml over out/data, with M members' artifacts in out/work; returns the kit.yaml path."""
    import yaml

    sys.path.insert(0, str(HERE))
    from kit.artifacts.member import write_member
    from kit.config.load import load_config
    from kit.workspace import open_workspace

    rng = np.random.default_rng(seed)
    prior = 0.85 ** np.arange(C)
    y = rng.choice(C, size=n, p=prior / prior.sum())
    y[:C] = np.arange(C)  # every class present
    data = out / "data"
    for split, count in (("train", n), ("test", n_test)):
        for i in range(count):
            d = data / split / f"{i // 1000:04d}"
            if i % 1000 == 0:
                d.mkdir(parents=True, exist_ok=True)
            (d / f"{i}.png").write_bytes(PNG)
    names = [f"c{c:02d}" for c in range(C)]
    with (data / "train.csv").open("w") as f:
        f.write("id,img_path,label\n")
        f.writelines(f"r{i},train/{i // 1000:04d}/{i}.png,{names[y[i]]}\n" for i in range(n))
    with (data / "test.csv").open("w") as f:
        f.write("id,img_path\n")
        f.writelines(f"t{i},test/{i // 1000:04d}/{i}.png\n" for i in range(n_test))
    cfg = {
        "competition": {
            "root": "data",
            "train": "train.csv",
            "test": "test.csv",
            "id_column": "id",
            "image_column": "img_path",
            "label_column": "label",
            "metric": "weighted_f1",
        },
        "folds": {"k": 5, "seed": 0},
        "workdir": "work",
        "members": {},
    }
    config = out / "kit.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (out / "ensembles").mkdir(exist_ok=True)
    (out / "ensembles" / "all.yaml").write_text((HERE / "kit/templates/ensemble_all.yaml").read_text())
    cwd = os.getcwd()
    os.chdir(out)
    try:
        ws = open_workspace(load_config(config))
        labels = np.asarray(ws.train.labels)
        for m in range(M):
            z = rng.normal(0, 1.0 + 0.15 * m, size=(n, C)).astype(np.float32)
            z[np.arange(n), labels] += 3.0 - 0.2 * m
            zt = rng.normal(0, 1.0 + 0.15 * m, size=(n_test, C)).astype(np.float32)
            views = lambda a: np.stack([a, a + rng.normal(0, 0.3, a.shape).astype(np.float32)], 1)  # noqa: E731
            prints = (
                {"fingerprints": ws.fingerprints()}
                if hasattr(ws, "fingerprints")
                else ws.member_fingerprints()  # kit before issue 29
            )
            write_member(
                ws.workdir,
                f"m{m}",
                oof=views(z),
                test=views(zt),
                views=["plain", "hflip"],
                classes=ws.classes,
                config={"kind": "timm"},
                metrics={},
                timings={},
                **prints,
            )
    finally:
        os.chdir(cwd)
    return config


def run_blend(out: Path, kit_dir: Path, engine: str, tag: str) -> float:
    before = numba_cache(kit_dir)
    code = FORCE[engine] + (
        "import sys\nfrom kit.cli.app import app\n"
        "sys.argv = ['kit', 'blend', 'ensembles/all.yaml', '-c', 'kit.yaml']\napp()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(kit_dir), "COLUMNS": "200"}
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], cwd=out, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"kit blend failed ({kit_dir}, {engine}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    winner = [line for line in r.stdout.splitlines() if line.startswith("winner ")]
    print(f"    {winner[0][:150] if winner else ''}", flush=True)
    compiled = [f for f, t in numba_cache(kit_dir).items() if before.get(f) != t]
    if compiled:
        print(f"    COLD: numba compiled during this run: {', '.join(sorted(compiled))}", flush=True)
    (out / "tables").mkdir(exist_ok=True)
    shutil.copy(out / "work" / "blends" / "all" / "table.csv", out / "tables" / f"{tag}.csv")
    return seconds


def blender_seconds(table: Path) -> dict[str, float]:
    """Seconds per blender (its longest chain row: the rows' seconds include the blender's own fits)."""
    rows = list(csv.DictReader(table.open()))
    out: dict[str, float] = {}
    for r in rows:
        name = r["blender"].split("+")[0]
        out[name] = max(out.get(name, 0.0), float(r["seconds"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--n-test", type=int, default=20_000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--members", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engines", nargs="+", default=["auto"], choices=list(FORCE))
    ap.add_argument("--kit", type=Path, action="append", default=None, help="a kit checkout (repeatable)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="workspace folder (kept; built when missing)")
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="kit-blend-engine-"))
    if not (out / "kit.yaml").exists():
        if out.exists() and any(out.iterdir()):
            raise SystemExit(
                f"{out} is not empty and holds no kit.yaml: pass an empty or new folder as --out"
            )
        out.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        build(out, a.n, a.n_test, a.classes, a.members, a.seed)
        print(
            f"built {out}: {a.n} train rows, {a.classes} classes, {a.members} members x 2 views "
            f"({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    kits = [k.resolve() for k in (a.kit or [HERE])]
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(a.rounds):
        for k in kits:
            for e in a.engines:
                s = run_blend(out, k, e, f"{k.name}-{e}-{r + 1}")
                times.setdefault((str(k), e), []).append(s)
                load = " ".join(f"{v:.2f}" for v in os.getloadavg())
                print(f"round {r + 1}: kit {k} engine {e}: {s:.1f} s (load {load})", flush=True)
    base = min(times.values(), key=lambda v: -min(v))
    print("\nkit | engine | best s | ratio to the slowest")
    for (k, e), v in times.items():
        print(f"{k} | {e} | {min(v):.1f} | {min(base) / min(v):.2f}x")
    tables = {(k, e): blender_seconds(out / "tables" / f"{Path(k).name}-{e}-1.csv") for k, e in times}
    names = list(next(iter(tables.values())))
    print("\nseconds per blender, round 1 (nested CV of the blender and its post-processing chains)")
    print("kit | engine | " + " | ".join(names))
    for (k, e), t in tables.items():
        print(f"{k} | {e} | " + " | ".join(f"{t.get(n, 0.0):.1f}" for n in names))


if __name__ == "__main__":
    main()
