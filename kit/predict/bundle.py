"""`kit export`: a folder that predicts with no workspace, no kit.yaml and no training data.

DIR/manifest.json                  sha256 and size of every other file; kit, torch, timm, open_clip versions
DIR/recipe.json                    the blend winner (or member) as data, and the submission settings
DIR/members/NAME/member.json       kind, classes, views, preprocessing (size, resample, mean, std), batch size
DIR/members/NAME/config.json       the member's resolved config
DIR/members/NAME/fold{f}.safetensors   fold weights (timm: the network; clip_probe: the head); fp16 with --half
DIR/members/NAME/encoder/          clip_probe: the open_clip encoder as a local-dir folder
DIR/members/NAME/timm/config.json  timm models named hf-hub:ID or local-dir:DIR: their config, read as local-dir:
DIR/wheels/                        --wheels: kit and its dependencies but torch/torchvision (kit/predict/wheels.py);
                                   listed in the manifest's "wheels", not checked when predicting
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from kit.artifacts.atomic import atomic_dir
from kit.errors import KitError
from kit.predict.bundle_schema import (
    FileEntry,
    Manifest,
    MemberFile,
    RecipeFile,
    problems_of,
    refuse_paths,
)
from kit.predict.members import MemberPlan, load_fold
from kit.predict.recipe import reads

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
RECIPE = "recipe.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    from kit.artifacts.member import library_versions

    return library_versions()


def save_tensors(tensors: dict[str, Any], path: Path) -> None:
    """safetensors bytes written by Python, so a full disk is an OSError (safetensors' own writer raises an
    error of its own type that says only 'I/O error')."""
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in tensors.items()})
    with path.open("wb") as f:
        f.write(data)


def write_bundle(
    out: Path,
    recipe: dict[str, Any],
    plans: list[MemberPlan],
    competition: dict[str, Any],
    *,
    half: bool = False,
    configs: dict[str, Any] | None = None,
    wheels: Callable[[Path], Any] | None = None,
) -> int:
    """Write the bundle atomically (refusing an existing folder); returns its size in bytes. `wheels(folder)`
    (kit.predict.wheels.write_wheels) fills DIR/wheels; if it or the disk fails, nothing is written. Temps that
    killed exports left beside `out` (and in TMPDIR) are removed first."""
    from kit.predict.scratch import clean_dead_temps, temp_root, write_failed

    if out.exists():
        raise KitError(f"--out {out} exists; kit export writes a new folder (remove it or choose another)")
    if out.parent.is_dir():
        clean_dead_temps(out.parent)
    clean_dead_temps(temp_root())
    try:
        _write(out, recipe, plans, competition, half, configs, wheels)
    except OSError as e:
        raise write_failed("--out", out, e, "the bundle") from None
    return sum(q.stat().st_size for q in out.rglob("*") if q.is_file())


def _write(
    out: Path,
    recipe: dict[str, Any],
    plans: list[MemberPlan],
    competition: dict[str, Any],
    half: bool,
    configs: dict[str, Any] | None,
    wheels: Callable[[Path], Any] | None,
) -> None:
    import torch

    with atomic_dir(out) as tmp:
        for p in plans:
            d = tmp / "members" / p.name
            d.mkdir(parents=True)
            folds = []
            for f, path in enumerate(p.folds):
                state = load_fold(p, path)
                tensors = {
                    k: (v if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v)))
                    for k, v in state.items()
                }
                if half:
                    tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
                save_tensors(tensors, d / f"fold{f}.safetensors")
                folds.append(d / f"fold{f}.safetensors")
            info = {**replace(p, folds=folds).to_json(d), "model": p.predictor.export(p, d, half)}
            (d / "member.json").write_text(json.dumps(info, indent=2) + "\n", "utf-8")
            (d / "config.json").write_text(
                json.dumps((configs or {}).get(p.name, {}), indent=2, default=str) + "\n"
            )
        (tmp / RECIPE).write_text(json.dumps({"recipe": recipe, "competition": competition}, indent=2) + "\n")
        files = sorted(q for q in tmp.rglob("*") if q.is_file())
        wheel_files = []
        if wheels is not None:
            wheels(tmp / "wheels")
            wheel_files = sorted((tmp / "wheels").iterdir())
        manifest = {
            "format": BUNDLE_FORMAT,
            "half": half,
            "versions": _versions(),
            "members": [p.name for p in plans],
            "files": {
                q.relative_to(tmp).as_posix(): {"sha256": _sha256(q), "size": q.stat().st_size} for q in files
            },
            "wheels": {
                f"wheels/{q.name}": {"sha256": _sha256(q), "size": q.stat().st_size} for q in wheel_files
            },
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")


# ---------------------------------------------------------------- reading: only what the manifest lists

MAX_JSON = 16 << 20  # manifest.json, recipe.json and member.json are a few kB; more is not a bundle
EXPORT_AGAIN = (
    "export it again (`kit export ENSEMBLE.yaml --out DIR`, or `--member NAME`) and copy the whole folder"
)


class _Bundle:
    """A bundle folder read only through its manifest: relative paths that stay inside the folder once links are
    resolved, regular files, listed in manifest.json, of the listed size and sha256."""

    def __init__(self, d: Path, verify: bool) -> None:
        if not d.is_dir():
            raise KitError(f"--bundle {d}: not a folder; give the folder `kit export --out` wrote")
        self.dir, self.root, self.verify = d, d.resolve(), verify
        self.files: dict[str, FileEntry] = {}

    def why_not(self, rel: str) -> str | None:
        """Why the file `rel` may not be read (None: it may). Nothing outside the bundle is opened or measured."""
        path = self.dir / rel
        if not os.path.lexists(path):
            return "missing"
        try:
            real = path.resolve()
            if self.root not in real.parents:
                return "a link to outside the bundle (kit reads only files inside it)"
            mode = real.stat().st_mode
        except RuntimeError:  # a symlink loop
            return "a link that leads nowhere (a loop)"
        except OSError as e:
            return f"unreadable ({e.strerror})"
        return None if stat.S_ISREG(mode) else "not a regular file"

    def check_files(self) -> list[str]:
        problems = []
        for rel, want in self.files.items():
            why = self.why_not(rel)
            if why is None:
                size = (self.dir / rel).stat().st_size
                if size != want.size:
                    why = f"{size} bytes, the manifest says {want.size}"
                elif self.verify and _sha256(self.dir / rel) != want.sha256:
                    why = "its sha256 differs from the manifest's (the file changed or is corrupt)"
            if why is not None:
                problems.append(f"{rel}: {why}")
        return problems

    def read_json(self, rel: str, *, listed: bool = True) -> Any:
        """The parsed JSON file `rel` (listed in the manifest unless `listed` is False: the manifest itself)."""
        if listed and rel not in self.files:
            raise _Problem(
                f"{rel}: not listed in {MANIFEST} (every file a bundle reads is listed there with its sha256)"
            )
        why = self.why_not(rel)
        if why is not None:
            raise _Problem(f"{rel}: {why}")
        path = self.dir / rel
        if path.stat().st_size > MAX_JSON:
            raise _Problem(f"{rel}: {path.stat().st_size} bytes; a bundle's JSON files are a few kB")
        data = path.read_bytes()
        if listed and self.verify and hashlib.sha256(data).hexdigest() != self.files[rel].sha256:
            raise _Problem(f"{rel}: its sha256 differs from the manifest's (the file changed or is corrupt)")
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise _Problem(f"{rel}: not valid JSON ({str(e)[:120]})") from None

    def unlisted_under(self, folder: str) -> list[str]:
        """Files (and links) inside `folder` that the manifest does not list."""
        out = []
        for dirpath, dirnames, filenames in os.walk(self.dir / folder):
            base = Path(dirpath)
            links = [d for d in dirnames if (base / d).is_symlink()]
            for name in [*filenames, *links]:
                rel = (base / name).relative_to(self.dir).as_posix()
                if rel not in self.files:
                    out.append(rel)
        return sorted(out)


class _Problem(Exception):
    """One problem with a bundle file, collected into the KitError that lists them all."""


def _refuse(d: Path, problems: list[str]) -> KitError:
    return KitError(
        f"bundle {d} is not as `kit export` wrote it, so kit does not predict with it; {EXPORT_AGAIN}:",
        problems=problems,
    )


def _open(d: Path, verify: bool) -> tuple[_Bundle, dict[str, Any]]:
    b = _Bundle(d, verify)
    if not os.path.lexists(d / MANIFEST):
        raise KitError(f"{d}: no {MANIFEST}; not a bundle `kit export` wrote (or an incomplete copy of one)")
    try:
        raw = b.read_json(MANIFEST, listed=False)
    except _Problem as e:
        raise _refuse(d, [str(e)]) from None
    try:
        b.files = Manifest.model_validate(raw).files
    except ValidationError as e:
        raise _refuse(d, problems_of(e, MANIFEST)) from None
    problems = b.check_files()
    if problems:
        raise KitError(
            f"bundle {d} does not match its {MANIFEST}: copy it again, or {EXPORT_AGAIN}:", problems=problems
        )
    return b, raw


def verify_bundle(d: Path, *, verify: bool = True) -> dict[str, Any]:
    """The manifest, after checking every listed file: inside the bundle, a regular file, its size and (with
    `verify`) its sha256; every problem named at once."""
    return _open(d, verify)[1]


def _member(b: _Bundle, name: str) -> tuple[MemberFile | None, list[str]]:
    """members/NAME/member.json, checked: its keys, and each file it names listed in the manifest."""
    rel = f"members/{name}/member.json"
    try:
        raw = b.read_json(rel)
        m = MemberFile.model_validate(raw)
        model = m.model_config_of_kind()
        folders = m.predictor.bundle_folders(model)
    except _Problem as e:
        return None, [str(e)]
    except ValidationError as e:
        prefix = "model" if isinstance(raw, dict) and "model" in raw and e.title != "MemberFile" else ""
        return None, problems_of(e, rel, prefix)
    problems = []
    if m.name != name:
        problems.append(f"{rel}: name: {m.name!r}, but the folder (and manifest.json) say {name!r}")
    for i, fold in enumerate(m.folds):
        if f"members/{name}/{fold}" not in b.files:
            problems.append(f"{rel}: folds.{i}: members/{name}/{fold} is not listed in {MANIFEST}")
    for key, folder, config, files in folders:
        problems += _config_folder(b, rel, key, f"members/{name}/{folder}", config, *files)
    return (None if problems else m), problems


def _config_folder(b: _Bundle, rel: str, key: str, folder: str, config: str, *more: str) -> list[str]:
    """A model folder a library reads by itself (open_clip's or timm's local-dir:): its files listed, nothing
    else in it (libraries pick weights by pattern), and a config JSON that names no file path."""
    problems = [
        f"{rel}: {key}: {folder}/{f} is not listed in {MANIFEST}"
        for f in (config, *more)
        if f"{folder}/{f}" not in b.files
    ]
    problems += [
        f"{q}: not listed in {MANIFEST}, in a folder a library reads by pattern (remove the file)"
        for q in b.unlisted_under(folder)
    ]
    if problems:
        return problems
    try:
        cfg = b.read_json(f"{folder}/{config}")
    except _Problem as e:
        return [str(e)]
    if not isinstance(cfg, dict) or not (
        isinstance(cfg.get("model_cfg"), dict) or isinstance(cfg.get("architecture"), str)
    ):
        return [f"{folder}/{config}: not a model config (no model_cfg or architecture)"]
    try:
        refuse_paths(cfg)
    except ValueError as e:
        return [f"{folder}/{config}: {e}"]
    return []


def _fits(recipe: dict[str, Any], members: dict[str, MemberFile]) -> list[str]:
    """The recipe's members are in the bundle, with the recipe's classes and the views it reads."""
    where = f"{RECIPE}: recipe"
    listed = ", ".join(members)

    def member(name: str, key: str, views: list[str]) -> list[str]:
        m = members.get(name)
        if m is None:
            return [f"{where}.{key}: {name!r} is not a member of the bundle ({MANIFEST} members: {listed})"]
        out = []
        if m.classes != recipe["classes"]:
            out.append(
                f"{where}.classes: {recipe['classes'][:10]} differ from members/{name}/member.json classes "
                f"{m.classes[:10]}"
            )
        missing = [v for v in views if v not in m.views]
        if missing:
            out.append(f"{where}.{key}: views {missing} are not views of member {name!r} ({m.views})")
        return out

    if recipe["kind"] == "member":
        return member(recipe["name"], "name", recipe["views"])

    def used(part: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        return [(i, c) for i, c in enumerate(part["candidates"]) if reads(part, c)]

    problems: list[str] = []
    if not recipe.get("parts"):
        for i, c in used(recipe):
            problems += member(c["member"], f"candidates.{i}.member", c["views"])
        return list(dict.fromkeys(problems))
    top = {c["name"]: c for c in recipe["candidates"]}
    in_parts: set[str] = set()
    for j, part in enumerate(
        recipe["parts"]
    ):  # an average of rows: each row's candidates, among the recipe's
        for i, c in used(part):
            in_parts.add(c["name"])
            t = top.get(c["name"])
            if t is None or t["member"] != c["member"] or not set(c["views"]) <= set(t["views"]):
                problems.append(
                    f"{where}.parts.{j}.candidates.{i}: {c['name']!r} ({c['member']}, {c['views']}) is not one of "
                    "the recipe's candidates (name, member and views)"
                )
            problems += member(c["member"], f"parts.{j}.candidates.{i}.member", c["views"])
    for i, c in enumerate(recipe["candidates"]):
        if c["name"] in in_parts:
            problems += member(c["member"], f"candidates.{i}.member", c["views"])
    return list(dict.fromkeys(problems))


def read_bundle(d: Path, *, verify: bool = True) -> tuple[dict[str, Any], list[MemberPlan], dict[str, Any]]:
    """The recipe, member plans and competition settings of a bundle, every file checked first (verify_bundle),
    every JSON key checked (kit.predict.bundle_schema). Anything else is a KitError listing each problem."""
    b, manifest = _open(d, verify)
    problems: list[str] = []
    members: dict[str, MemberFile] = {}
    for name in manifest["members"]:
        m, why = _member(b, name)
        problems += why
        if m is not None:
            members[name] = m
    data: dict[str, Any] | None = None
    try:
        data = b.read_json(RECIPE)
        RecipeFile.model_validate(data)
    except _Problem as e:
        problems.append(str(e))
        data = None
    except ValidationError as e:
        problems += problems_of(e, RECIPE)
        data = None
    if data is not None and len(members) == len(manifest["members"]):
        problems += _fits(data["recipe"], members)
    if problems or data is None:
        raise _refuse(d, problems)
    origin = f"bundle {d}"
    plans = []
    for name, m in members.items():
        md = d / "members" / name
        plan = MemberPlan.from_json(m.model_dump(), md)
        plan.source, plan.fix = f"{origin}: members/{name}/member.json", EXPORT_AGAIN
        plans.append(plan)
    return data["recipe"], plans, data["competition"]
