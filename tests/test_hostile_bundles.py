"""Issue 27, items 8, 9 and 10 for `kit predict` and `kit export`: bundles are confined to themselves, killed
runs leave nothing behind for long, and full disks end in a clear error with nothing half-written.

One tiny trained workspace (a timm test_convnext and a one-layer CLIP probe, 2 folds, real PNGs) exported once;
each test copies a bundle and edits it by hand as a hostile or careless user would, through the real CLI (and
`kit.Predictor.load`, what notebooks call).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import invoke, kit_on_limited_disk, write_csv
from train_helpers import CLASSES, make_competition, member, write_config
from typer.testing import CliRunner

import kit

REPO = Path(kit.__file__).resolve().parents[1]
KIT = Path(sys.executable).parent / "kit"
FIX = "kit export"  # every refusal of a bundle names the fix: export it again


# ---------------------------------------------------------------- the workspace and its bundles


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained workspace: timm member `cnx`, clip_probe member `clip`, blend `stack` (winner: cnx)."""
    from kit.demo.tiny_clip import write_tiny_clip

    home = tmp_path_factory.mktemp("hostile-bundles")
    data = make_competition(home / "data")
    write_csv(data / "sample_submission.csv", ["id", "label"], [[f"t{j:03d}", CLASSES[0]] for j in range(8)])
    clip_dir = write_tiny_clip(home / "clip-tiny")
    members = {
        "cnx": member(tta=["plain", "hflip"]),
        "clip": {"kind": "clip_probe", "model": f"local-dir:{clip_dir}", "epochs": 3, "tta": ["plain"]},
    }
    config = write_config(home / "kit.yaml", data, members)
    cfg = yaml.safe_load(config.read_text())
    cfg["competition"]["sample_submission"] = "sample_submission.csv"
    cfg["workdir"] = "work"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (home / "ensembles").mkdir()
    spec = {"members": {"cnx": {"views": "all"}, "clip": {"views": "all"}}, "blenders": [{"kind": "uniform"}]}
    (home / "ensembles" / "stack.yaml").write_text(yaml.safe_dump(spec))
    loaded = kit.load_config(config)
    kit.train_members(loaded)
    kit.blend_members(loaded, home / "ensembles" / "stack.yaml")
    return home


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_of(b: Path) -> dict[str, Any]:
    return json.loads((b / "manifest.json").read_text())


def write_manifest(b: Path, m: dict[str, Any]) -> None:
    (b / "manifest.json").write_text(json.dumps(m, indent=2))


def rehash(b: Path, *rels: str) -> None:
    """Update (or add) the manifest entries of `rels`: a hand edit that also fixes the manifest's hashes."""
    m = manifest_of(b)
    for rel in rels:
        m["files"][rel] = {"sha256": sha(b / rel), "size": (b / rel).stat().st_size}
    write_manifest(b, m)


def edit_json(b: Path, rel: str, fn: Callable[[Any], Any], *, fix_hash: bool = True) -> None:
    data = json.loads((b / rel).read_text())
    out = fn(data)
    (b / rel).write_text(json.dumps(data if out is None else out, indent=2))
    if fix_hash and rel != "manifest.json":
        rehash(b, rel)


@pytest.fixture(scope="module")
def bundles(home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """'blend': `kit export` of the blend (cnx only); 'clip': of member clip; 'rich': the blend bundle plus the
    clip member and a stack recipe over both with logit_adjust and class_bias (every recipe field in use)."""
    root = tmp_path_factory.mktemp("bundles")
    runner = CliRunner()
    out = {"blend": root / "blend", "clip": root / "clip"}
    r = invoke(runner, ["export", "ensembles/stack.yaml", "--out", str(out["blend"])], cwd=home)
    assert r.exit_code == 0, r.output
    r = invoke(runner, ["export", "--member", "clip", "--out", str(out["clip"])], cwd=home)
    assert r.exit_code == 0, r.output
    rich = root / "rich"
    shutil.copytree(out["blend"], rich)
    if not (rich / "members" / "clip").exists():  # the blend's winner may not use the clip member
        shutil.copytree(out["clip"] / "members" / "clip", rich / "members" / "clip")
    m = manifest_of(rich)
    m["members"] = ["cnx", "clip"]
    m["files"].update(
        {k: v for k, v in manifest_of(out["clip"])["files"].items() if k.startswith("members/")}
    )
    write_manifest(rich, m)
    rng = np.random.default_rng(0)

    def stack(d: dict[str, Any]) -> None:
        r = d["recipe"]
        r["candidates"] = [
            {"name": "cnx", "member": "cnx", "views": ["plain", "hflip"], "temperature": 1.0, "weight": 0.6},
            {"name": "clip", "member": "clip", "views": ["plain"], "temperature": 1.5, "weight": 0.4},
        ]
        r.pop("parts", None)  # the exported winner may be an average of rows
        r["blender"] = r["blender_kind"] = "stack"
        r["stack"] = {
            "C": 0.5,
            "C_choice": "fixed",
            "C_grid": None,
            "C_inner_log_loss": None,
            "features": "log_probs",
            "classes_seen": [0, 1, 2],
            "coef": rng.normal(size=(3, 6)).round(3).tolist(),
            "intercept": [0.1, -0.2, 0.1],
            "dtype": "float32",
        }
        r["postprocess"] = {
            "logit_adjust": {"tau": 0.5, "prior": [0.5, 0.3, 0.2]},
            "class_bias": {"offsets": [0.0, 0.5, -0.5]},
        }

    edit_json(rich, "recipe.json", stack)
    return {**out, "rich": rich}


@pytest.fixture
def copy_bundle(bundles: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    def make(name: str, folder: str = "bundle") -> Path:
        dst = tmp_path / folder
        shutil.copytree(bundles[name], dst, symlinks=True)
        return dst

    return make


def images_dir(home: Path) -> Path:
    return home / "data" / "test"


def predict_args(b: Path, images: Path, out: Path) -> list[str]:
    return ["predict", "--bundle", str(b), "--images", str(images), "--out", str(out)]


def test_the_crafted_rich_bundle_is_a_good_bundle(
    home: Path, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """The hand-made 'rich' bundle (the base of the edits below) is valid: it predicts finite probabilities."""
    from kit import Predictor

    p = Predictor.load(bundles["rich"])
    probs = p.predict_proba(sorted(images_dir(home).glob("*.png")))
    assert probs.shape == (8, 3) and np.isfinite(probs).all()
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert set(p.plans) == {"cnx", "clip"}


# ---------------------------------------------------------------- item 8: confinement and hand edits


def _outside_fold(b: Path) -> Path:
    """A real fold file of the bundle copied outside it (weights that would load and predict)."""
    dst = b.parent / "elsewhere" / "fold0.safetensors"
    dst.parent.mkdir(exist_ok=True)
    shutil.copy(b / "members" / "cnx" / "fold0.safetensors", dst)
    return dst


def _set(path: list[Any], value: Any) -> Callable[[Any], None]:
    def fn(d: Any) -> None:
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return fn


def _fold_absolute(b: Path) -> None:
    edit_json(b, "members/cnx/member.json", _set(["folds", 0], str(_outside_fold(b))))


def _fold_dotdot(b: Path) -> None:
    _outside_fold(b)
    edit_json(b, "members/cnx/member.json", _set(["folds", 0], "../../../elsewhere/fold0.safetensors"))


def _fold_symlink(b: Path) -> None:  # same bytes as listed, but the file is a link to a copy outside
    target = _outside_fold(b)
    (b / "members" / "cnx" / "fold0.safetensors").unlink()
    (b / "members" / "cnx" / "fold0.safetensors").symlink_to(target)


def _member_dir_symlink(b: Path) -> None:
    outside = b.parent / "elsewhere-cnx"
    shutil.move(b / "members" / "cnx", outside)
    (b / "members" / "cnx").symlink_to(outside, target_is_directory=True)


def _fold_unlisted(b: Path) -> None:
    shutil.copy(b / "members" / "cnx" / "fold0.safetensors", b / "members" / "cnx" / "extra.safetensors")
    edit_json(b, "members/cnx/member.json", _set(["folds", 0], "extra.safetensors"))


def _secret(b: Path) -> Path:
    s = b.parent / "secret.txt"
    s.write_bytes(b"s" * 1234)
    return s


def _manifest_absolute(b: Path) -> None:
    edit_json(b, "manifest.json", _set(["files", str(_secret(b))], {"sha256": "0" * 64, "size": 1}))


def _manifest_dotdot(b: Path) -> None:
    _secret(b)
    edit_json(b, "manifest.json", _set(["files", "../secret.txt"], {"sha256": "0" * 64, "size": 1}))


def _members_dotdot(b: Path) -> None:
    shutil.copytree(b / "members" / "cnx", b.parent / "evil")
    edit_json(b, "manifest.json", _set(["members"], ["../../evil"]))


def _recipe_unlisted(b: Path) -> None:
    edit_json(b, "manifest.json", lambda m: m["files"].pop("recipe.json") and None)
    edit_json(b, "recipe.json", _set(["recipe", "candidates", 0, "temperature"], 7.0), fix_hash=False)


def _manifest_symlink(b: Path) -> None:
    outside = b.parent / "manifest-elsewhere.json"
    shutil.move(b / "manifest.json", outside)
    (b / "manifest.json").symlink_to(outside)


def _kwargs_checkpoint(b: Path) -> None:
    edit_json(
        b,
        "members/cnx/member.json",
        _set(["model", "model_kwargs"], {"checkpoint_path": str(_outside_fold(b))}),
    )


def _clip_encoder_outside(b: Path) -> None:
    shutil.copytree(b / "members" / "clip" / "encoder", b.parent / "enc")
    edit_json(b, "members/clip/member.json", _set(["model", "encoder_dir"], "../../../enc"))


def _clip_model_outside(b: Path) -> None:
    shutil.copytree(b / "members" / "clip" / "encoder", b.parent / "enc")
    edit_json(b, "members/clip/member.json", _set(["model"], {"model": f"local-dir:{b.parent / 'enc'}"}))


def _garbage_fold(b: Path) -> None:
    (b / "members" / "cnx" / "fold0.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    rehash(b, "members/cnx/fold0.safetensors")


def _not_json(b: Path) -> None:
    (b / "manifest.json").write_text('{"format": 1, "files": ')


def _zero_weights(b: Path) -> None:  # a weighted blend whose weights are all 0: NaN probabilities otherwise
    def fn(d: Any) -> None:
        for part in [d["recipe"], *(d["recipe"].get("parts") or [])]:
            for c in part["candidates"]:
                c["weight"] = 0.0

    edit_json(b, "recipe.json", fn)


def _clip_config(path: list[Any], value: Any) -> Callable[[Path], None]:
    def edit(b: Path) -> None:
        edit_json(b, "members/clip/encoder/open_clip_config.json", _set(["model_cfg", *path], value))

    return edit


def _weights(b: Path, rel: str, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    from safetensors.torch import load_file, save_file

    save_file(fn(dict(load_file(str(b / rel)))), str(b / rel))
    rehash(b, rel)


def _nan_weights(b: Path) -> None:  # valid safetensors, hashes fixed: NaN logits, a CSV of garbage otherwise
    _weights(
        b, "members/cnx/fold1.safetensors", lambda s: {k: v.clone().fill_(float("nan")) for k, v in s.items()}
    )


def _clip_head_shape(b: Path) -> None:  # a head for 4 classes in a 3-class bundle
    import torch

    _weights(
        b,
        "members/clip/fold0.safetensors",
        lambda s: {"weight": torch.zeros(4, s["weight"].shape[1]), "bias": torch.zeros(4)},
    )


# (id, bundle, edit, what the message must name)
EDITS: list[tuple[str, str, Callable[[Path], None], list[str]]] = [
    ("fold-absolute-path", "blend", _fold_absolute, ["members/cnx/member.json", "folds"]),
    ("fold-dotdot-path", "blend", _fold_dotdot, ["members/cnx/member.json", "folds"]),
    ("fold-symlink-outside", "blend", _fold_symlink, ["members/cnx/fold0.safetensors", "outside the bundle"]),
    ("member-folder-symlink-outside", "blend", _member_dir_symlink, ["members/cnx", "outside the bundle"]),
    ("fold-not-in-manifest", "blend", _fold_unlisted, ["members/cnx/extra.safetensors", "not listed"]),
    ("manifest-absolute-path", "blend", _manifest_absolute, ["manifest.json", "files"]),
    ("manifest-dotdot-path", "blend", _manifest_dotdot, ["manifest.json", "files", "../secret.txt"]),
    ("members-dotdot", "blend", _members_dotdot, ["manifest.json", "members"]),
    ("recipe-not-in-manifest", "blend", _recipe_unlisted, ["recipe.json", "not listed"]),
    ("manifest-symlink-outside", "blend", _manifest_symlink, ["manifest.json", "outside the bundle"]),
    ("model-kwargs-checkpoint", "blend", _kwargs_checkpoint, ["members/cnx/member.json", "model_kwargs"]),
    ("clip-encoder-outside", "clip", _clip_encoder_outside, ["members/clip/member.json", "encoder_dir"]),
    ("clip-model-outside", "clip", _clip_model_outside, ["members/clip/member.json", "model"]),
    (
        "missing-key",
        "blend",
        lambda b: edit_json(b, "members/cnx/member.json", lambda d: d.pop("classes") and None),
        ["members/cnx/member.json", "classes"],
    ),
    (
        "wrong-type",
        "blend",
        lambda b: edit_json(b, "members/cnx/member.json", _set(["size"], "32")),
        ["members/cnx/member.json", "size"],
    ),
    (
        "unknown-member",
        "rich",
        lambda b: edit_json(b, "recipe.json", _set(["recipe", "candidates", 1, "member"], "ghost")),
        ["recipe.json", "ghost"],
    ),
    (
        "stack-coef-shape",
        "rich",
        lambda b: edit_json(b, "recipe.json", _set(["recipe", "stack", "coef", 0], [1.0])),
        ["recipe.json", "stack.coef"],
    ),
    ("zero-weights", "blend", _zero_weights, ["recipe.json", "weight"]),
    ("garbage-weights-file", "blend", _garbage_fold, ["members/cnx/fold0.safetensors"]),
    ("manifest-not-json", "blend", _not_json, ["manifest.json"]),
    (
        "clip-config-wrong-type",
        "clip",
        _clip_config(["embed_dim"], "x"),
        ["members/clip/member.json", "encoder"],
    ),
    (
        "clip-config-path",
        "clip",
        _clip_config(["text_cfg", "hf_tokenizer_name"], "/etc/tok"),
        ["open_clip_config.json", "file path"],
    ),
    ("nan-weights", "blend", _nan_weights, ["members/cnx/member.json", "NaN"]),
    ("clip-head-shape", "clip", _clip_head_shape, ["members/clip/member.json", "fold 0", "linear head"]),
]


@pytest.mark.parametrize("case", EDITS, ids=[e[0] for e in EDITS])
def test_hand_edited_bundle_is_refused_naming_file_key_and_fix(
    case: tuple[str, str, Callable[[Path], None], list[str]],
    home: Path,
    copy_bundle: Callable[[str], Path],
    tmp_path: Path,
    runner: CliRunner,
) -> None:
    from kit import Predictor
    from kit.errors import KitError

    _, which, edit, names = case
    b = copy_bundle(which)
    edit(b)
    out = tmp_path / "sub.csv"
    r = invoke(runner, predict_args(b, images_dir(home), out), cwd=tmp_path)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "error:" in r.output
    for n in [*names, str(b), FIX]:
        assert n in r.output, (n, r.output)
    assert "1234" not in r.output  # nothing about a file outside the bundle (the secret's size)
    assert not out.exists() and not out.with_suffix(".npy").exists()
    # the notebook's way in: the same refusal
    with pytest.raises(KitError) as e:
        Predictor.load(b).predict_proba(sorted(images_dir(home).glob("*.png"))[:2])
    assert all(n in str(e.value) for n in names), str(e.value)


WRONG: list[tuple[str, Any]] = [("null", None), ("str", "x"), ("int", -1), ("float", 1e300), ("dict", {})]
WRONG_MORE: list[tuple[str, Any]] = [("bool", True), ("list", []), ("nested", [[[[["deep"]]]]]), ("zero", 0)]


def _mutations(
    data: Any, path: tuple[Any, ...] = (), thorough: bool = False
) -> Iterator[tuple[tuple[Any, ...], str, Any]]:
    """(key path, label, new value or DELETE) for every key and list element (a list's first element; with
    `thorough` also its last): deleted, an unknown key beside it, and each wrong JSON value."""
    wrong = WRONG + WRONG_MORE if thorough else WRONG
    if isinstance(data, dict):
        for k, v in data.items():
            yield (*path, k), "delete", DELETE
            yield from _mutations(v, (*path, k), thorough)
        yield (*path, "unknown_key"), "extra key", 1
    elif isinstance(data, list):
        for i in sorted({0, len(data) - 1} if thorough else {0}):
            if i < len(data):
                yield from _mutations(data[i], (*path, i), thorough)
        yield path, "empty list", []
    if path:
        for label, value in wrong:
            if type(value) is not type(data) or value != data:
                yield path, label, value


DELETE = object()


def _apply(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    data = copy.deepcopy(data)
    d = data
    for k in path[:-1]:
        d = d[k]
    if value is DELETE:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return data


@pytest.mark.parametrize(
    "thorough", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["fast", "thorough"]
)
def test_every_single_hand_edit_of_a_bundle_is_refused_or_predicts(
    thorough: bool, home: Path, copy_bundle: Callable[[str, str], Path]
) -> None:
    """Each key of manifest.json, recipe.json (a stack with post-processing, and an average of rows) and both
    member.json files deleted, nulled, given every wrong JSON type or an unknown sibling, with the manifest's
    hashes fixed up (as a careful hand edit would): each is either a KitError naming the file and the fix, or a
    bundle that still predicts finite probabilities. Nothing else (no traceback, no NaN)."""
    from kit import Predictor
    from kit.errors import KitError
    from kit.predict.recipe import apply

    images = sorted(images_dir(home).glob("*.png"))[:1]
    rich, blend = copy_bundle("rich", "rich"), copy_bundle("blend", "blend")
    logits = Predictor.load(rich).member_logits(images)  # every view of both members, for edited recipes
    targets = [
        (rich, f)
        for f in ("manifest.json", "recipe.json", "members/cnx/member.json", "members/clip/member.json")
    ]
    targets.append((blend, "recipe.json"))
    counts = {"tried": 0, "refused": 0, "predicted": 0}
    failures: list[str] = []
    for b, f in targets:
        t0 = time.perf_counter()
        text, manifest = (b / f).read_text(), manifest_of(b)
        original = json.loads(text)
        for path, label, value in _mutations(original, thorough=thorough):
            if f == "manifest.json" and path[:1] == ("files",) and len(path) > 2 and path[1] != "recipe.json":
                continue  # one file entry is enough: the others are alike
            counts["tried"] += 1
            (b / f).write_text(json.dumps(_apply(original, path, value)))
            if f != "manifest.json":
                rehash(b, f)
            where = f"{b.name}/{f} {'.'.join(map(str, path))} {label}"
            try:
                p = Predictor.load(b)
                # member.json edits run the models; the others change only the recipe
                probs = p.predict_proba(images) if f.startswith("members/") else apply(p.recipe, logits)
                if probs.shape != (1, 3) or not np.isfinite(probs).all():
                    failures.append(f"{where}: predicted {probs!r}")
                counts["predicted"] += 1
            except KitError as e:
                counts["refused"] += 1
                if f not in str(e) or FIX not in str(e):
                    failures.append(f"{where}: the message does not name {f} and the fix: {e}")
            except Exception as e:  # what the test looks for
                failures.append(f"{where}: {type(e).__name__}: {str(e)[:300]}")
            finally:
                (b / f).write_text(text)
                write_manifest(b, manifest)
        print(f"{b.name}/{f}: {time.perf_counter() - t0:.1f} s")
    print(f"hand edits: {counts}")
    assert not failures, f"{len(failures)} of {counts['tried']}:\n" + "\n".join(failures[:60])
    assert counts["refused"] > 10 * counts["predicted"], (
        counts
    )  # most edits break the bundle: each is refused


def test_unlisted_files_in_an_encoder_folder_are_refused(
    home: Path, copy_bundle: Callable[[str], Path], tmp_path: Path, runner: CliRunner
) -> None:
    """open_clip picks a weights file in its folder by glob: a file the manifest does not list there is refused
    (else it might be read: `open_clip_model.bin` is a pickle)."""
    b = copy_bundle("clip")
    (b / "members" / "clip" / "encoder" / "open_clip_pytorch_model.bin").write_bytes(b"not listed")
    out = tmp_path / "sub.csv"
    r = invoke(runner, predict_args(b, images_dir(home), out), cwd=tmp_path)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "members/clip/encoder/open_clip_pytorch_model.bin" in r.output and "not listed" in r.output
    assert not out.exists()


def test_local_dir_timm_member_exports_its_config_and_predicts_without_the_folder(
    tmp_path: Path, runner: CliRunner
) -> None:
    """A timm member named `local-dir:DIR` was exported as a pointer to DIR (read when predicting, from outside
    the bundle); its config.json is now in the bundle, and the bundle predicts bit-equal to training after DIR
    is gone."""
    import timm
    from timm.models._hub import save_for_hf

    from kit import Predictor

    src = tmp_path / "cnx-src"
    save_for_hf(timm.create_model("test_convnext", num_classes=3), src, safe_serialization=True)
    data = make_competition(tmp_path / "data")
    config = write_config(
        tmp_path / "kit.yaml", data, {"loc": member(model=f"local-dir:{src}", tta=["plain"])}
    )
    kit.train_members(kit.load_config(config))
    b = tmp_path / "bundle"
    r = invoke(runner, ["export", "--member", "loc", "--out", str(b)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    info = json.loads((b / "members" / "loc" / "member.json").read_text())
    assert info["model"]["model"] == "test_convnext" and info["model"]["model_dir"] == "timm"
    assert "members/loc/timm/config.json" in manifest_of(b)["files"]
    shutil.rmtree(src)
    got = Predictor.load(b).member_logits(sorted((data / "test").glob("*.png")))["loc"][1]
    want = np.load(tmp_path / "work" / "members" / "loc" / "test_logits.npy")
    assert np.array_equal(got, want), np.abs(got - want).max()


# ---------------------------------------------------------------- item 10: killed runs


def kit_env(tmpdir: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmpdir), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 300) -> None:
    """SIGKILL the process (and its children) as soon as `ready()`: kill -9 in the middle of the run."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before it could be killed:\n{proc.communicate()[0]}")
        assert time.monotonic() < deadline, "timed out waiting for the run to start writing"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def touch(paths: list[Path]) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"user data")


def test_killed_predict_leaves_scratch_that_the_next_predict_removes(
    home: Path, bundles: dict[str, Path], tmp_path: Path
) -> None:
    from kit.artifacts.atomic import HOST

    tmpdir = tmp_path / "tmp"
    keep = [
        tmpdir / "kit-predict-mine" / "32px-bicubic.npy",  # not provably kit's: a user's
        tmpdir / "notes.txt",
        tmpdir
        / f".kit-predict.kit-{HOST}-{os.getpid()}-0123abcd.tmp"
        / "32px-bicubic.npy",  # alive: this test
        tmpdir / ".kit-predict.kit-otherhost-999999-0123abcd.tmp" / "32px-bicubic.npy",  # another host's
    ]
    touch(keep)
    before = set(tmpdir.iterdir())
    out = tmp_path / "sub.csv"
    args = [str(KIT), *predict_args(bundles["blend"], images_dir(home), out)]
    proc = subprocess.Popen(
        args,
        env=kit_env(tmpdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def decoding() -> bool:
        return any(any(p.rglob("*.npy")) for p in tmpdir.iterdir() if p not in before)

    kill_when(proc, decoding)
    left = sorted(set(tmpdir.iterdir()) - before)
    assert left and not out.exists()

    r = subprocess.run(args, env=kit_env(tmpdir), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.exists() and "removed 1 temporary" in r.stderr, r.stderr
    assert not any(p.exists() for p in left), left
    assert all(p.read_bytes() == b"user data" for p in keep)
    assert set(tmpdir.iterdir()) == before  # and its own scratch is gone too


def test_killed_export_leaves_temps_that_the_next_export_removes(home: Path, tmp_path: Path) -> None:
    from kit.artifacts.atomic import HOST

    tmpdir, out_dir = tmp_path / "tmp", tmp_path / "out"
    out = out_dir / "bundle"
    keep = [
        out_dir / ".bundle.mine.tmp",
        out_dir / "notes.txt",
        out_dir / f".bundle.kit-{HOST}-{os.getpid()}-0123abcd.tmp" / "manifest.json",  # alive: this test
        tmpdir / "kit-wheel-mine" / "kit-src.txt",
    ]
    touch(keep)
    before_out, before_tmp = set(out_dir.iterdir()), set(tmpdir.iterdir())
    proc = subprocess.Popen(
        [str(KIT), "export", "ensembles/stack.yaml", "--out", str(out), "--wheels"],
        cwd=home,
        env=kit_env(tmpdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def writing_wheels() -> bool:  # the bundle's members are written and kit's source is copied for pip
        bundle = any((p / "wheels").is_dir() for p in out_dir.iterdir() if p not in before_out)
        source = any((p / "kit-src").is_dir() for p in tmpdir.iterdir() if p not in before_tmp)
        return bundle and source

    kill_when(proc, writing_wheels)
    left = sorted(set(out_dir.iterdir()) - before_out)
    left_tmp = sorted(p for p in set(tmpdir.iterdir()) - before_tmp if "kit-" in p.name)
    assert left and left_tmp and not out.exists()

    r = subprocess.run(
        [str(KIT), "export", "ensembles/stack.yaml", "--out", str(out)],
        cwd=home,
        env=kit_env(tmpdir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "manifest.json").is_file() and "removed" in r.stderr, r.stderr
    assert not any(p.exists() for p in [*left, *left_tmp]), [*left, *left_tmp]
    assert all(p.read_bytes() == b"user data" for p in keep)
    assert set(out_dir.iterdir()) == before_out | {out}


# ---------------------------------------------------------------- item 9: full disks


def assert_clean_failure(r: subprocess.CompletedProcess[str], *names: str) -> None:
    text = r.stdout + r.stderr
    assert r.returncode == 1, text
    assert "Traceback" not in text and "error:" in text, text
    for n in names:
        assert n in text, (n, text)


def test_full_tmpdir_during_predict_is_a_clear_error(
    home: Path, bundles: dict[str, Path], tmp_path: Path
) -> None:
    tmpdir = tmp_path / "tmp"
    out = tmp_path / "o" / "sub.csv"
    r = kit_on_limited_disk(
        predict_args(bundles["blend"], images_dir(home), out),
        tmp_path,
        full=[tmpdir],
        env={"TMPDIR": str(tmpdir)},
    )
    assert_clean_failure(r, str(tmpdir), "TMPDIR", "No space left on device")
    assert not out.exists() and not out.with_suffix(".npy").exists()


def test_full_out_during_predict_is_a_clear_error(
    home: Path, bundles: dict[str, Path], tmp_path: Path
) -> None:
    out_dir = tmp_path / "o"
    touch([out_dir / "mine.csv"])
    out = out_dir / "sub.csv"
    args = [
        *predict_args(bundles["blend"], images_dir(home), out),
        "--sample",
        str(home / "data" / "sample_submission.csv"),
    ]
    r = kit_on_limited_disk(args, tmp_path, full=[out_dir])
    assert_clean_failure(r, str(out), "--out", "No space left on device")
    assert sorted(p.name for p in out_dir.iterdir()) == ["mine.csv"]


def test_full_out_during_export_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    out = out_dir / "bundle"
    r = kit_on_limited_disk(["export", "ensembles/stack.yaml", "--out", str(out)], home, full=[out_dir])
    assert_clean_failure(r, str(out), "--out", "No space left on device")
    assert not out.exists()


def listing(folder: Path) -> list[str]:
    return sorted(f"./{p.relative_to(folder)}" for p in folder.rglob("*"))


def test_nearly_full_tmpdir_is_a_clear_error_not_a_crash(
    home: Path, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Room for the scratch's header but not its pixels: the memory map died of SIGBUS ("Bus error", no
    message, scratch left behind) at the first page it could not allocate."""
    tmpdir, out = tmp_path / "tmp", tmp_path / "o" / "sub.csv"
    args = predict_args(bundles["blend"], images_dir(home), out)  # 8 images at 32 px: a 24.7 kB scratch
    r = kit_on_limited_disk(args, tmp_path, full=[tmpdir], room_kb=16, env={"TMPDIR": str(tmpdir)})
    assert_clean_failure(r, str(tmpdir), "TMPDIR", "No space left on device")
    assert listing(tmpdir) == [] and not out.exists()


def test_nearly_full_out_during_predict_leaves_no_npy(
    home: Path, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Room for the .npy but not the CSV: the .npy was left at the destination without its CSV."""
    out_dir = tmp_path / "o"
    out = out_dir / "sub.csv"
    touch([out_dir / "mine.csv"])
    args = predict_args(bundles["blend"], images_dir(home), out)
    r = kit_on_limited_disk(args, tmp_path, full=[out_dir], room_kb=4)  # a page: the .npy, not the CSV
    assert_clean_failure(r, str(out), "--out", "No space left on device")
    assert listing(out_dir) == ["./mine.csv"]


def test_nearly_full_out_during_export_leaves_no_partial_bundle(home: Path, tmp_path: Path) -> None:
    """Room for the first 0.8 MB fold but not the second: a clear error (safetensors' own error type was a
    traceback), no partial bundle."""
    out_dir = tmp_path / "o"
    touch([out_dir / "mine.csv"])
    out = out_dir / "bundle"
    args = ["export", "ensembles/stack.yaml", "--out", str(out)]
    r = kit_on_limited_disk(args, home, full=[out_dir], room_kb=1024)
    assert_clean_failure(r, str(out), "--out", "No space left on device")
    assert listing(out_dir) == ["./mine.csv"]
