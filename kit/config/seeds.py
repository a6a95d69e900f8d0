"""Seed bags: `seeds: [0, 1, 2]` on member NAME stands for members NAME-s0, NAME-s1, NAME-s2, each with that
`seed`, trained, listed and blended like members written by hand.

The expansion happens once, when kit.yaml is validated (`expand_seed_bags`, called by KitConfig): from then on
`cfg.members` holds the seed members only, so `kit train`, `kit runs`, `kit validate`, the workers and the
run hash see ordinary members (NAME-s0 has the run hash a hand-written member with `seed: 0` would have).
Each expanded member remembers its bag, so a name the user wrote (`kit train NAME`, an ensemble spec naming
NAME) still means the whole bag (`resolve_names`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from kit.config.schema import MemberBase

M = TypeVar("M", bound="MemberBase")


def seed_member_name(name: str, seed: int) -> str:
    return f"{name}-s{seed}"


def expand_seed_bags(members: dict[str, M]) -> dict[str, M]:
    """Every member with `seeds` replaced, in place of it, by one member per seed (with `seed` set and no
    `seeds`); a seed member's name that kit.yaml already defines is an error naming both."""
    out: dict[str, M] = {}
    problems = []
    for name, m in members.items():
        if not m.seeds:
            out[name] = m
            continue
        for s in m.seeds:
            sub = seed_member_name(name, s)
            if sub in members:
                problems.append(
                    f"members.{name}.seeds: the seed member '{sub}' is also defined in kit.yaml; rename one of "
                    f"them (seed members are named NAME-sSEED)"
                )
                continue
            seeded = m.model_copy(update={"seed": s, "seeds": None})
            seeded._seed_bag = name
            out[sub] = seeded
    if problems:
        raise ValueError("; ".join(problems))
    return out


def seed_bags(members: Mapping[str, MemberBase]) -> dict[str, list[str]]:
    """Bag name -> its seed members' names, in seed order as written."""
    bags: dict[str, list[str]] = {}
    for name, m in members.items():
        if m._seed_bag is not None:
            bags.setdefault(m._seed_bag, []).append(name)
    return bags


def resolve_names(names: list[str], members: Mapping[str, MemberBase]) -> list[str]:
    """Names as the user wrote them, with each bag name replaced by its seed members (others kept as given)."""
    bags = seed_bags(members)
    out: list[str] = []
    for n in names:
        for x in bags.get(n, [n]) if n not in members else [n]:
            if x not in out:
                out.append(x)
    return out
