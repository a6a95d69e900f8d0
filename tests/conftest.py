"""Shared fixtures: real image files and competition folders built in tmp_path; nothing touches the network."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
# `kit train` picks its torch threads from the load (kit.train.threads), and the thread count changes float
# reduction order: tests that compare two runs bit for bit need one fixed count (tests/test_threads.py unsets it)
os.environ.setdefault("KIT_THREADS", "1")

import numpy as np
import pytest
from typer.testing import CliRunner


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (20, 16), mode: str = "RGB") -> Path:
    """A real image file (format from the suffix) with seeded random pixels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]], bom: bool = False) -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real embedded demo competition (long-tailed digits PNGs), built once per test session."""
    from kit.demo.digits import build_demo

    return build_demo(tmp_path_factory.mktemp("demo") / "data")


# `kit init`'s convnext member made tiny (2 folds, 1 epoch, 32 px): what CLI tests pass as --set overrides
TINY_INIT_MEMBER = [
    "folds.k=2",
    "members.convnext.model=test_convnext",
    "members.convnext.pretrained=false",
    "members.convnext.img_size=32",
    "members.convnext.epochs=1",
]


def bench_selection():
    """bench/bench_selection.py as a module (its simulated competitions: tests use the same process)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_selection.py"
    spec = importlib.util.spec_from_file_location("bench_selection", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_selection"] = mod
    spec.loader.exec_module(mod)
    return mod


def multinomial_objective(
    coef: np.ndarray, intercept: np.ndarray, X: np.ndarray, y: np.ndarray, C: float
) -> float:
    """scikit-learn's LogisticRegression objective (mean log loss + ||coef||^2 / (2 C n)) in float64 at
    coefficients [K, d] and intercepts [K] over the classes 0..K-1, written out here to check the stack against."""
    z = X.astype(np.float64) @ np.asarray(coef, np.float64).T + np.asarray(intercept, np.float64)
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    loss = float((log_norm - z[np.arange(len(y)), y]).mean())
    return loss + float((np.asarray(coef, np.float64) ** 2).sum()) / (2 * C * len(y))


def threshold_in_gap(values: np.ndarray, quantile: float = 0.5, min_gap: float = 1e-6) -> float:
    """A threshold for a `value >= t` filter on computed values (probabilities, scores) that no last-bit
    rounding can move a value across: the midpoint of the widest gap between consecutive sorted values among
    the splits near the `quantile` (within a quarter of the values of it), so at least one value lies on each
    side. kit and a test compute such values along different paths (another summation order, a renormalised
    row, another CPU's SIMD), so a threshold placed on a value selects it on one machine and not on another.
    Fails the test when that gap is under `min_gap` (the data leave no robust threshold there); the default
    leaves each side a margin of 5e-7, about 8 float32 ulps of 1.0 and far above float64 rounding."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = len(v)
    if n < 2:
        pytest.fail(f"threshold_in_gap needs at least 2 values, got {n}")
    k = min(max(round(quantile * n), 1), n - 1)  # the wanted number of values below the threshold
    w = max(1, n // 4)
    lo, hi = max(1, k - w), min(n - 1, k + w)  # split j puts v[:j] below and v[j:] above
    gaps = v[lo : hi + 1] - v[lo - 1 : hi]
    j = lo + int(np.argmax(gaps))
    if v[j] - v[j - 1] < min_gap:
        pytest.fail(
            f"no gap of at least {min_gap} between sorted values near quantile {quantile} (widest "
            f"{v[j] - v[j - 1]:.3g} at {float(v[j - 1])!r} | {float(v[j])!r}); a threshold there would sit on a "
            "data point"
        )
    return float((v[j - 1] + v[j]) / 2)


def set_args(overrides: list[str]) -> list[str]:
    """['a=1', 'b=2'] -> ['--set', 'a=1', '--set', 'b=2']"""
    return [a for s in overrides for a in ("--set", s)]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, args: list[str], cwd: Path | None = None):
    """Run the real `kit` Typer app (the console script's target) with args; returns the Result."""
    from kit.cli.app import app

    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(app, args, catch_exceptions=False)
    finally:
        os.chdir(old)


def _namespaces_work() -> bool:
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return r.returncode == 0


def kit_on_limited_disk(
    args: list[str],
    cwd: Path,
    *,
    full: list[Path] = (),  # type: ignore[assignment]
    read_only: list[Path] = (),  # type: ignore[assignment]
    env: dict[str, str] | None = None,
    timeout: float = 600,
    room_kb: int = 0,
):
    """Run the real `kit` console script with some folders on a real full disk or read-only filesystem.

    In a private mount namespace (`unshare -rm`, nothing outside the command sees it), each folder in `full`
    becomes a tmpfs holding a copy of its contents with no free byte left (writes fail with ENOSPC, as on a
    full disk), or with `room_kb` KiB free (a nearly full disk: room for a small file, not a large one);
    whatever the command left there is copied back afterwards, so the test sees the folder as the disk held it. Each folder in `read_only` is bind-mounted read-only (EROFS, which even root cannot
    write). Skips where the machine cannot make user mount namespaces. Returns the CompletedProcess."""
    import shlex
    import subprocess
    import sys

    if not _namespaces_work():
        pytest.skip("needs `unshare -rm` (user mount namespaces) to make a real full or read-only disk")
    kit = Path(sys.executable).parent / "kit"
    lines = ["set -e"]
    for i, p in enumerate(full):
        q = shlex.quote(str(p))
        lines += [
            f"mkdir -p {q}",
            f'_t{i}=$(mktemp -d -p /tmp) && cp -a {q}/. "$_t{i}"',  # -p: not in $TMPDIR, which may be {q}
            f"mount -t tmpfs -o size=$(( $(du -sk {q} | cut -f1) * 2 + 64 + {room_kb} ))k kitfull {q}",
            f'cp -a "$_t{i}"/. {q}',
            f"dd if=/dev/zero of={q}/.kit-test-room bs=1024 count={room_kb} 2>/dev/null",
            f"dd if=/dev/zero of={q}/.kit-test-fill bs=4096 2>/dev/null || true",
            f"dd if=/dev/zero of={q}/.kit-test-fill2 bs=1 2>/dev/null || true",
            f"rm {q}/.kit-test-room",
        ]
    for p in read_only:
        q = shlex.quote(str(p))
        lines += [f"mkdir -p {q}", f"mount --bind {q} {q}", f"mount -o remount,bind,ro {q}"]
    # enter cwd again after mounting: a cwd entered before would still reach the folder under the mount
    lines.append(f"cd {shlex.quote(str(cwd))}")
    lines += ["set +e", " ".join(shlex.quote(a) for a in [str(kit), *args]), "rc=$?", "cd /", "set -e"]
    for i, p in enumerate(full):  # what the command left on the full disk stays, as it would on a real one
        q = shlex.quote(str(p))
        lines += [
            f"rm -f {q}/.kit-test-fill {q}/.kit-test-fill2",
            f'rm -rf "$_t{i}" && mkdir "$_t{i}" && cp -a {q}/. "$_t{i}"',
            f"umount {q}",
            f"find {q} -mindepth 1 -delete",
            f'cp -a "$_t{i}"/. {q} && rm -rf "$_t{i}"',
        ]
    lines.append("exit $rc")
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", "\n".join(lines)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
