"""Read YAML, apply `--set dotted.key=value` overrides, validate, and report every problem at once."""

from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kit.config.schema import MEMBER_KINDS, Competition, KitConfig
from kit.errors import KitError

M = TypeVar("M", bound=BaseModel)


MAX_YAML_VALUES = 100_000  # a kit config holds hundreds of values; aliases must not expand past this


class AliasBomb(yaml.YAMLError):
    """A YAML document whose aliases expand past MAX_YAML_VALUES."""


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses documents whose aliases expand to more than MAX_YAML_VALUES values
    (a 500-byte "billion laughs" file would otherwise become gigabytes once validated or printed)."""

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None and _expanded_size(node) > MAX_YAML_VALUES:
            mark = node.start_mark
            raise AliasBomb(
                f"its aliases (*name, from line {mark.line + 1}) expand to more than {MAX_YAML_VALUES:,} values"
            )
        return node


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds once every alias is written out (shared nodes counted per use)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = MAX_YAML_VALUES + 1  # a recursive alias expands forever
        if isinstance(node, yaml.SequenceNode):
            n = 1 + sum(size(c) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            n = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            n = 1
        sizes[id(node)] = n = min(n, MAX_YAML_VALUES + 1)
        return n

    return size(root)


def load_yaml_text(text: str) -> Any:
    """yaml.safe_load with alias expansion bounded (MAX_YAML_VALUES)."""
    return yaml.load(text, Loader=_BoundedLoader)


def bounded(value: Any, limit: int = 80) -> str:
    """repr(value) cut to about `limit` characters, for messages that quote a user's input."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxtuple, r.maxset = 2, 4, 4, 4, 4
    r.maxstring = r.maxother = limit
    text = r.repr(value)
    return text if len(text) <= limit + 10 else text[: limit - 3] + "..."


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        hint = "run `kit init DATA_DIR` to write one" if path.name == "kit.yaml" else "check the path"
        raise KitError(f"{path}: file not found; {hint}")
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise KitError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    except AliasBomb as e:
        raise KitError(f"{path}: {e}; write the values out instead of repeating aliases") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise KitError(
            f"{where}: not valid YAML ({bounded(getattr(e, 'problem', None) or e, 200)}); fix the syntax there"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KitError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def set_path(data: dict[str, Any], parts: list[str], value: Any) -> str | None:
    """Set data[a][b]...[z] = value; list items by index (`blenders.0.rounds`). Returns a problem or None."""
    node: Any = data
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return f"{'.'.join(parts[:i])} is a list of {len(node)}; use an index 0..{len(node) - 1}"
            if last:
                node[int(part)] = value
                return None
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
                return None
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            return f"{'.'.join(parts[:i])} is a value, not a section"
        if not isinstance(node, (dict, list)):
            return f"{where} is a value, not a section"
    return None


def _new_member_problem(data: dict[str, Any], parts: list[str], known: list[str] | None) -> str | None:
    """`members.cnxx.epochs=1` names no member of the file: say so (a new member needs `members.NAME.kind=`
    first, and `members.NAME={...}` defines one whole)."""
    if known is None or len(parts) < 3 or parts[0] != "members" or parts[1] in known:
        return None
    current = data["members"].get(parts[1]) if isinstance(data.get("members"), dict) else None
    if parts[2] == "kind" or (isinstance(current, dict) and "kind" in current):
        return None
    close = difflib.get_close_matches(parts[1], known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"kit.yaml defines {known}"
    return f"no member '{parts[1]}'; {hint}"


def apply_overrides(
    data: dict[str, Any], overrides: list[str] | None, source: str = "--set"
) -> dict[str, Any]:
    """`members.convnext.epochs=1` -> data['members']['convnext']['epochs'] = 1 (value parsed as YAML)."""
    problems = []
    members = data.get("members")
    known = list(members) if isinstance(members, dict) else None
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"{source} {item!r}: expected dotted.key=value, e.g. members.convnext.epochs=1")
            continue
        try:
            value = load_yaml_text(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        problem = _new_member_problem(data, parts, known) or set_path(data, parts, value)
        if problem:
            problems.append(f"{source} {item!r}: {problem}")
    if problems:
        raise KitError("bad overrides:", problems=problems)
    return data


def field_types(tp: Any) -> list[Any]:
    """The classes a field annotation allows: Optional, unions and Annotated unwrapped."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return field_types(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in field_types(a)]
    return [tp]


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model allows at `loc` (for 'did you mean' on misspelled keys)."""
    candidates: list[Any] = [model]
    for part in loc:
        nxt: list[Any] = []
        for c in candidates:
            if isinstance(c, type) and issubclass(c, BaseModel):
                if part in c.model_fields:
                    nxt.extend(field_types(c.model_fields[part].annotation))
                elif part in MEMBER_KINDS:
                    nxt.append(c)
            elif typing.get_origin(c) is dict:
                nxt.extend(field_types(typing.get_args(c)[1]))
        candidates = nxt
        # a discriminated member: narrow by the kind tag when the location names it
        if part in MEMBER_KINDS:
            candidates = [
                c
                for c in candidates
                if isinstance(c, type) and issubclass(c, BaseModel) and _kind_of(c) == part
            ] or candidates
    names: list[str] = []
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            names.extend(c.model_fields)
    return names


def _kind_of(model: type[BaseModel]) -> str | None:
    f = model.model_fields.get("kind")
    if f is None:
        return None
    args = typing.get_args(f.annotation)
    return args[0] if args else None


def format_errors(err: ValidationError, model: type[BaseModel]) -> list[str]:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        # drop the discriminator tag pydantic inserts after members.<name>
        shown = [
            str(p) for i, p in enumerate(loc) if not (p in MEMBER_KINDS and i >= 2 and loc[0] == "members")
        ]
        key = ".".join(shown) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown key" + (
                f"; did you mean '{close[0]}'?" if close else f"; allowed: {sorted(allowed)}"
            )
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "union_tag_invalid" or e["type"] == "union_tag_not_found":
            msg = f"member needs `kind:` one of {list(MEMBER_KINDS)}"
        elif "input" in e and e["type"] not in ("model_type",) and not isinstance(e["input"], dict):
            msg = f"{msg} (got {bounded(e['input'])})"
        lines.append(f"{key}: {msg}")
    return lines


def validate_data(data: dict[str, Any], model: type[M], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = format_errors(err, model)
        raise KitError(f"{source}: {len(problems)} problem(s) in the config:", problems=problems) from None


def resolve_paths(cfg: KitConfig, base: Path) -> KitConfig:
    """Make competition paths absolute: root relative to the config's folder, the rest relative to root."""
    comp = cfg.competition
    root = (base / comp.root).resolve() if not comp.root.is_absolute() else comp.root
    updates: dict[str, Any] = {"root": root}
    for key in ("train", "train_images", "test", "test_images", "sample_submission"):
        p = getattr(comp, key)
        if p is not None and not p.is_absolute():
            updates[key] = root / p
    if comp.label_overrides is not None and not comp.label_overrides.is_absolute():
        updates["label_overrides"] = base / comp.label_overrides  # the user's own file: beside the kit.yaml
    if comp.groups_file is not None and not comp.groups_file.is_absolute():
        updates["groups_file"] = base / comp.groups_file  # beside the kit.yaml, as `kit init` writes it
    workdir = cfg.workdir if cfg.workdir.is_absolute() else (base / cfg.workdir).resolve()
    # members with file paths (e.g. clip_probe's local-dir:) resolve them against the config's folder too
    members = {n: m.with_base(base) if hasattr(m, "with_base") else m for n, m in cfg.members.items()}
    updates["extra_train"] = [  # external data: relative to root, like the competition's own paths
        e.model_copy(
            update={
                k: root / p
                for k in ("train", "images")
                if (p := getattr(e, k)) is not None and not p.is_absolute()
            }
        )
        for e in comp.extra_train
    ]
    comp = comp.model_copy(update=updates)
    check_workdir(comp, workdir)
    track = cfg.tracking
    if track.dir is not None and not track.dir.is_absolute():
        track = track.model_copy(update={"dir": (base / track.dir).resolve()})
    return cfg.model_copy(
        update={"competition": comp, "workdir": workdir, "members": members, "tracking": track}
    )


def check_workdir(comp: Competition, workdir: Path) -> None:
    """Everything under the workdir is kit's (it writes folds.csv, members/, blends/, cache/ there), so the
    workdir must hold none of the competition's files and lie in none of its image folders."""
    wd = Path(os.path.abspath(workdir))
    folders = [comp.train_images, comp.test_images]
    folders += [None if comp.train_is_table else comp.train, None if comp.test_is_table else comp.test]
    for key in ("root", "train", "train_images", "test", "test_images", "sample_submission"):
        p = getattr(comp, key)
        if p is None:
            continue
        p = Path(os.path.abspath(p))
        if p == wd or wd in p.parents:
            raise KitError(
                f"workdir: {workdir} holds the competition's files (competition.{key}: {p}); kit writes its "
                "artifacts there and would mix them with the data. Use a folder of its own, e.g. workdir: work"
            )
    if comp.label_overrides is not None and wd in Path(os.path.abspath(comp.label_overrides)).parents:
        raise KitError(
            f"competition.label_overrides: {comp.label_overrides} is inside the workdir {workdir}, whose files "
            "kit replaces (its label suggestions included); copy the file next to kit.yaml and point "
            "label_overrides at the copy"
        )
    if comp.groups_file is not None and wd in Path(os.path.abspath(comp.groups_file)).parents:
        raise KitError(
            f"competition.groups_file: {comp.groups_file} is inside the workdir {workdir}, whose files kit "
            "replaces; move the file next to kit.yaml and point groups_file at it"
        )
    for f in folders:
        if f is not None and Path(os.path.abspath(f)) in wd.parents:
            raise KitError(
                f"workdir: {workdir} is inside the competition's image folder {f}; use a folder of its own, "
                "e.g. workdir: work next to kit.yaml"
            )


def load_config(path: Path | str = "kit.yaml", overrides: list[str] | None = None) -> KitConfig:
    path = Path(path)
    data = apply_overrides(read_yaml(path), overrides)
    cfg = validate_data(data, KitConfig, str(path))
    return resolve_paths(cfg, path.parent.resolve())
