"""`kit tune MEMBER --apply`: the study's best values as a new member MEMBER_tuned in kit.yaml.

The file is edited with ruamel.yaml's round trip, so its comments and key order stay; the new entry is the
source member's own entry (without `tune:`) with the best values set, under a comment saying where it came
from. An existing entry of that name is replaced only when kit wrote it (workdir/tune/MEMBER/applied/NEW.json
holds what was written); the whole new file is validated before it atomically replaces the old one.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.artifacts.atomic import atomic_write_json, atomic_write_text
from kit.artifacts.tuned import record_path
from kit.config.load import load_yaml_text, read_yaml, set_path, validate_data
from kit.config.schema import MEMBER_NAME, KitConfig
from kit.errors import KitError
from kit.tune.study import TuneSetup, best_row


@dataclass(frozen=True)
class Applied:
    name: str
    source: str
    values: dict[str, Any]
    trial: int
    value: float
    path: Path


def _plain(node: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists (for comparing with what kit wrote)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def apply_best(config: Path, ts: TuneSetup, as_name: str | None = None) -> Applied:
    from ruamel.yaml import YAML

    name, ws = ts.name, ts.ws
    best = best_row(ts.study)
    if best is None or best.value is None:
        raise KitError(
            f"study {ts.study.study_name} has no completed trial yet; run `kit tune {name} --trials N` first"
        )
    new = as_name or f"{name}_tuned"
    if not MEMBER_NAME.match(new):
        raise KitError(f"--as {new!r}: member names use letters, digits, '_', '.', '-' only")
    if new == name:
        raise KitError(f"--as {new}: that is the tuned member itself; choose a new name, e.g. {name}_tuned")
    raw = read_yaml(config).get("members") or {}
    if name not in raw:
        raise KitError(
            f"{config}: members.{name} is not in the file (was it added with --set?); add it there"
        )
    entry = copy.deepcopy(raw[name])
    entry.pop("tune", None)
    for key, value in best.params.items():
        problem = set_path(entry, key.split("."), value)
        if problem:
            raise KitError(f"members.{name}.tune.{key}: {problem}")

    yaml = YAML()  # round trip: comments, order and quoting stay
    yaml.preserve_quotes = True
    yaml.width = 4096
    doc = yaml.load(config.read_text(encoding="utf-8"))
    members = doc["members"]
    rec_path = record_path(ws.workdir, name, new)
    if new in members:
        import json

        try:
            rec = json.loads(rec_path.read_text("utf-8"))
        except (OSError, ValueError):
            rec = {}
        if rec.get("name") != new or rec.get("entry") != _plain(members[new]):
            raise KitError(
                f"{config}: members.{new} already exists and kit did not write it (or it was edited since); "
                f"kit leaves it alone. Rename it there, or write the tuned member under another name with "
                f"`kit tune {name} --apply --as {name}_tuned2`"
            )
    members[new] = entry
    metric = ws.cfg.competition.scored_by
    folds = ", ".join(map(str, ts.folds))
    members.yaml_set_comment_before_after_key(
        new,
        before=f"written by `kit tune {name} --apply`: trial {best.number} of study {ts.study.study_name}, "
        f"{metric} {best.value:.4f} on fold(s) {folds} of {ws.folds.k}",
        indent=2,
    )
    buf = io.StringIO()
    yaml.dump(doc, buf)
    text = buf.getvalue()

    validate_data(load_yaml_text(text), KitConfig, f"{config} with members.{new}")
    atomic_write_text(config, text)
    atomic_write_json(
        rec_path,
        {
            "name": new,
            "source": name,
            "entry": _plain(entry),
            "values": best.params,
            "trial": best.number,
            "value": best.value,
            "metric": metric,
            "study": ts.study.study_name,
            "storage": ts.storage_url,
            "folds": ts.folds,
            "k": ws.folds.k,
            "folds_fingerprint": ws.folds.fingerprint,
        },
    )
    return Applied(new, name, dict(best.params), best.number, best.value, config)
