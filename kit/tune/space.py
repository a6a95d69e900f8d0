"""The search space of `kit tune`: `members.NAME.tune` maps dotted member keys to a range or choices.

    tune:
      lr: {low: 1.0e-4, high: 1.0e-2, log: true}     # float range (log-uniform)
      epochs: {low: 2, high: 6}                       # integers when low and high are integers
      loss.kind: [ce, focal]                          # choices
      augment.preset: [light, strong]

Every key must be a field of the member (sections by dots, as `--set` writes them), and the member config must
validate at both ends of every range and at every choice; all problems are reported at once, before training.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from kit.config.load import field_types, set_path, validate_data
from kit.config.schema import KitConfig, TuneRange
from kit.errors import KitError

if TYPE_CHECKING:
    import optuna

    from kit.config.schema import MemberConfig

NOT_TUNABLE = ("kind", "tune")


@dataclass(frozen=True)
class Param:
    key: str  # dotted member key, e.g. loss.kind
    range: TuneRange | None = None
    choices: tuple[Any, ...] | None = None

    def ends(self) -> list[Any]:
        """The values the member config must accept: both ends of a range, every choice."""
        if self.range is not None:
            r = self.range
            return [int(r.low), int(r.high)] if r.integer else [float(r.low), float(r.high)]
        return list(self.choices or ())

    def describe(self) -> str:
        if self.range is not None:
            r = self.range
            return f"{r.low}..{r.high}" + (" log" if r.log else "") + (f" step {r.step}" if r.step else "")
        return " | ".join(map(str, self.choices or ()))


def _key_problem(model: type[BaseModel], key: str) -> str | None:
    """Why `key` names no field of the member model (None when it does)."""
    parts = key.split(".")
    if parts[0] in NOT_TUNABLE:
        return f"'{parts[0]}' cannot be tuned"
    current: type[BaseModel] | None = model
    for i, part in enumerate(parts):
        if current is None:  # a free-form dict (model_kwargs): any key
            return None
        if part not in current.model_fields:
            close = difflib.get_close_matches(part, list(current.model_fields), n=1)
            where = ".".join(parts[:i]) or "the member"
            fields = list(current.model_fields)
            listed = ", ".join(fields[:12]) + (", ..." if len(fields) > 12 else "")
            hint = f"did you mean '{'.'.join([*parts[:i], close[0]])}'?" if close else f"its keys: {listed}"
            return f"not a field of {where} ({model.__name__}); {hint}"
        types_ = field_types(current.model_fields[part].annotation)
        sections = [t for t in types_ if isinstance(t, type) and issubclass(t, BaseModel)]
        last = i == len(parts) - 1
        if sections:
            current = sections[0]
            if last:
                return f"'{key}' is a section; tune one of its keys, e.g. {key}.{next(iter(current.model_fields))}"
        elif any(t is dict or getattr(t, "__origin__", None) is dict for t in types_):
            current = None
        elif not last:
            return f"'{'.'.join(parts[: i + 1])}' is a value, not a section"
    return None


def search_space(cfg: KitConfig, name: str) -> list[Param]:
    """The member's search space, checked: every key a member field, every end and choice a valid member."""
    member = cfg.members[name]
    if not member.tune:
        raise KitError(
            f"members.{name} has no `tune:` search space; add one, e.g.\n"
            f"  members:\n    {name}:\n      tune:\n        lr: {{low: 1.0e-4, high: 1.0e-2, log: true}}\n"
            "        loss.kind: [ce, focal]\n(docs/tune.md)"
        )
    params, problems = [], []
    for key, spec in member.tune.items():
        where = f"members.{name}.tune.{key}"
        problem = _key_problem(type(member), key)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        if isinstance(spec, list) and not spec:
            problems.append(f"{where}: an empty list of choices; list at least two values")
            continue
        if isinstance(spec, list) and any(isinstance(c, (list, dict)) for c in spec):
            problems.append(f"{where}: choices must be single values (text, numbers, true/false, null)")
            continue
        p = Param(key, range=spec) if isinstance(spec, TuneRange) else Param(key, choices=tuple(spec))
        for value in p.ends():
            try:
                member_with(cfg, name, {key: value})
            except KitError as e:
                why = "; ".join(e.problems) if e.problems else str(e)
                problems.append(f"{where}: {value!r} is outside what the member accepts ({why})")
        params.append(p)
    if problems:
        raise KitError(
            f"members.{name}.tune: {len(problems)} problem(s) in the search space:", problems=problems
        )
    return params


def member_with(cfg: KitConfig, name: str, values: dict[str, Any]) -> MemberConfig:
    """Member `name` with dotted `values` set, validated as part of the whole config (cross-member rules too)."""
    data = cfg.model_dump(mode="json")
    entry = data["members"][name]
    for key, value in values.items():
        problem = set_path(entry, key.split("."), value)
        if problem:
            raise KitError(f"members.{name}.{key}: {problem}")
    return validate_data(data, KitConfig, f"members.{name} with {values}").members[name]


def suggest(trial: optuna.Trial, params: list[Param]) -> dict[str, Any]:
    """One sample of the space from the trial's sampler (TPE)."""
    out: dict[str, Any] = {}
    for p in params:
        if p.range is not None:
            r = p.range
            if r.integer:
                step = int(r.step) if r.step else 1
                out[p.key] = trial.suggest_int(p.key, int(r.low), int(r.high), step=step, log=r.log)
            else:
                out[p.key] = trial.suggest_float(p.key, float(r.low), float(r.high), step=r.step, log=r.log)
        else:
            out[p.key] = trial.suggest_categorical(p.key, list(p.choices or ()))
    return out
