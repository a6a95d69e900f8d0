"""`Predictor`: a trained ensemble (or one member) as a function from images to probabilities.

    from kit import Predictor
    p = Predictor.from_workspace("kit.yaml", ensemble="ensembles/all.yaml")   # or member="convnext"
    p = Predictor.load("bundle/")                                             # what `kit export` wrote
    p.classes; p.predict_proba(images) -> [n, C]; p.predict(images) -> labels

`images` are paths, PIL images or uint8 arrays. The CLI (`kit predict`) calls this class.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import KitError
from kit.predict.images import ImageInput, plan_geometry, spool, spool_key
from kit.predict.members import MemberPlan, run_member, workspace_plan
from kit.predict.recipe import apply, blend_recipe, member_recipe, needed_views
from kit.predict.scratch import scratch_dir
from kit.progress import NullReporter, Reporter

if TYPE_CHECKING:
    from kit.config.schema import KitConfig


@dataclass
class Timings:
    images: int = 0
    decode_s: float = 0.0
    members_s: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.total_s if self.total_s > 0 else 0.0


class Predictor:
    """Members' fold models plus the blend recipe; `predict_proba` streams images through them."""

    def __init__(
        self,
        recipe: dict[str, Any],
        plans: list[MemberPlan],
        competition: dict[str, Any],
        *,
        device: str = "auto",
        workers: int = 0,
        reporter: Reporter | None = None,
    ) -> None:
        self.recipe, self.competition = recipe, competition
        self.plans = {p.name: p for p in plans}
        self.views = needed_views(recipe, {p.name: p.views for p in plans})
        self.device, self.workers = device, workers
        self.reporter: Reporter = reporter or NullReporter()
        self.timings = Timings()
        self.origin = "train and blend again"  # where the recipe came from and how to remake it, for messages

    @property
    def classes(self) -> list[str]:
        return list(self.recipe["classes"])

    @property
    def name(self) -> str:
        return str(self.recipe["name"])

    # ------------------------------------------------------------ constructors

    @classmethod
    def from_workspace(
        cls,
        cfg_or_path: KitConfig | str | Path,
        ensemble: str | Path | None = None,
        *,
        member: str | None = None,
        overrides: list[str] | None = None,
        allow_stale: bool = False,
        **kwargs: Any,
    ) -> Predictor:
        """The fold models of a workspace's blend (`ensemble`: its spec file or name) or of one `member`.

        The artifacts are checked as `kit submit` checks them (same data, folds, config); each member's run
        folder must still hold every fold's weights."""
        from kit.artifacts.blend import load_blend
        from kit.artifacts.member import load_member
        from kit.config.load import load_config
        from kit.config.schema import KitConfig
        from kit.submit.source import blend_name, member_meta_score
        from kit.workspace import open_workspace

        if (ensemble is None) == (member is None):
            raise KitError("name what to predict with: an ensemble spec (or blend name) or member=NAME")
        cfg = cfg_or_path if isinstance(cfg_or_path, KitConfig) else load_config(Path(cfg_or_path), overrides)
        ws = open_workspace(cfg, need_test=False, write=False)
        expected = ws.expected(allow_stale=allow_stale)
        if member is not None:
            art = load_member(ws.workdir, member, expected, mmap=True)
            score, _ = member_meta_score(art.meta, cfg.competition.scored_by)
            recipe = member_recipe(member, art.classes, art.views, score)
            metas = {member: art.meta}
        else:
            res = load_blend(ws.workdir, blend_name(str(ensemble)), expected)
            recipe = blend_recipe(res.winner)
            members = sorted({c["member"] for c in recipe["candidates"]})
            metas = {m: load_member(ws.workdir, m, expected, mmap=True).meta for m in members}
        plans, problems = [], []
        views = needed_views(recipe, {m: list(meta["views"]) for m, meta in metas.items()})
        for m in views:
            plan, why = workspace_plan(ws, m, metas[m])
            problems += why
            if plan is not None:
                plans.append(plan)
        if problems:
            raise KitError(f"cannot predict with {recipe['kind']} '{recipe['name']}':", problems=problems)
        comp = cfg.competition
        competition = {
            "submission": comp.submission.model_dump(mode="json") if comp.submission else None,
            "id_column": comp.id_column,
            "image_column": comp.image_column,
            "metric": comp.scored_by,
        }
        p = cls(recipe, plans, competition, **kwargs)
        p.origin = (
            f"run `kit train {member}` again" if member is not None else f"run `kit blend {ensemble}` again"
        )
        return p

    @classmethod
    def load(cls, bundle_dir: str | Path, *, verify: bool = True, **kwargs: Any) -> Predictor:
        """A bundle `kit export` wrote. It reads only files inside the folder that manifest.json lists, each
        checked against its size and sha256 first (`verify=False` skips the sha256s, not the rest), and every key
        of its JSON files: anything else is a KitError naming the file and key (kit.predict.bundle)."""
        from kit.predict.bundle import EXPORT_AGAIN, RECIPE, read_bundle

        recipe, plans, competition = read_bundle(Path(bundle_dir), verify=verify)
        p = cls(recipe, plans, competition, **kwargs)
        p.origin = f"bundle {bundle_dir}: {RECIPE}; {EXPORT_AGAIN}"
        return p

    # ------------------------------------------------------------ prediction

    def member_logits(self, images: Sequence[ImageInput]) -> dict[str, tuple[list[str], np.ndarray]]:
        """member -> (views, float32 logits [n, V, C] averaged over its folds), for the views the recipe reads."""
        t0 = time.perf_counter()
        timings = Timings(images=len(images))
        out: dict[str, tuple[list[str], np.ndarray]] = {}
        order = [self.plans[m] for m in self.views]
        with scratch_dir("kit-predict", "the decoded images") as tmp:
            caches: dict[tuple[int, str, str, int | None], np.ndarray] = {}
            for p in order:
                key = spool_key(p)
                if key not in caches:
                    t = time.perf_counter()
                    with self.reporter.task(f"decode {p.size}px ({p.resample})", total=len(images)) as task:
                        caches[key] = spool(
                            images,
                            p.size,
                            p.resample,
                            Path(tmp),
                            workers=self.workers,
                            on_batch=task.advance,
                            geometry=plan_geometry(p),
                        )
                    timings.decode_s += time.perf_counter() - t
            for p in order:
                t = time.perf_counter()
                arr = run_member(
                    p,
                    caches[spool_key(p)],
                    self.views[p.name],
                    device=self.device,
                    reporter=self.reporter,
                )
                if not np.isfinite(arr).all():
                    raise KitError(
                        f"{p.where}: its fold models give NaN or infinite logits on these images, so no "
                        f"prediction of it can be trusted; {p.remedy}"
                    )
                out[p.name] = (self.views[p.name], arr)
                timings.members_s[p.name] = time.perf_counter() - t
            caches.clear()
        timings.total_s = time.perf_counter() - t0
        self.timings = timings
        return out

    def predict_proba(self, images: Sequence[ImageInput]) -> np.ndarray:
        """[n, C] probabilities in `classes` order: the blend winner's (float32, as its test_probs.npy) or
        the member's mean over views of softmax (as `kit submit --member`)."""
        logits = self.member_logits(images)
        t = time.perf_counter()
        probs = apply(self.recipe, logits)
        if not np.isfinite(probs).all():
            raise KitError(
                f"{self.recipe['kind']} '{self.name}': its recipe turns finite member logits into NaN or infinite "
                f"probabilities ({self.origin}); nothing was written"
            )
        self.timings.total_s += time.perf_counter() - t
        return probs

    def predict(self, images: Sequence[ImageInput]) -> list[str]:
        """The label of each image (argmax of predict_proba)."""
        probs = self.predict_proba(images)
        return [self.classes[i] for i in np.argmax(probs, axis=1)] if len(probs) else []
