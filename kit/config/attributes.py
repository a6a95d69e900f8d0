"""`competition.attributes`: each class as a tuple of attribute values, e.g. the mask competitions' 18 classes
as mask x gender x age, where a head per attribute learns from every image of each value.

Pure functions over the YAML mapping {class: {attribute: value}}: the shape rules (`shape_problems`, checked by
the config schema), the coverage of the data's classes (`coverage_problems`, checked by `kit train`'s preflight
and `kit validate` once the classes are known) and the codes a model's attribute heads use
(`attribute_codes`). Imports nothing heavy: `kit validate` runs these.
"""

from __future__ import annotations

from dataclasses import dataclass

KEY = "competition.attributes"


def shape_problems(attributes: dict[str, dict[str, str]]) -> list[str]:
    """Every class names the same attributes, no two classes share a value tuple, and some attribute has at
    least two values. All problems at once."""
    problems: list[str] = []  # the schema puts "competition.attributes:" before them
    if not attributes:
        return ["it is empty; map each class to its attribute values, or remove the key"]
    names = {c: tuple(sorted(v)) for c, v in attributes.items()}
    first_class, first = next(iter(names.items()))
    for c, n in names.items():
        if not n:
            problems.append(f"class {c!r} has no attributes; give it a value for each of {list(first)}")
        elif n != first:
            missing, extra = sorted(set(first) - set(n)), sorted(set(n) - set(first))
            what = "; ".join(
                part
                for part in (
                    f"lacks {missing}" if missing else "",
                    f"has {extra}, which class {first_class!r} does not" if extra else "",
                )
                if part
            )
            problems.append(
                f"class {c!r} {what}; every class needs a value for the same attributes {list(first)}"
            )
    seen: dict[tuple[str, ...], str] = {}
    for c, values in attributes.items():
        if names[c] != first:
            continue
        t = tuple(values[a] for a in first)
        if t in seen:
            problems.append(
                f"classes {seen[t]!r} and {c!r} have the same values {dict(zip(first, t, strict=True))}; "
                "each class needs its own combination (else the heads cannot tell them apart)"
            )
        else:
            seen[t] = c
    if all(len({v[a] for v in attributes.values() if a in v}) < 2 for a in first):
        problems.append(
            f"no attribute has two values ({list(first)}); an attribute head needs at least two values"
        )
    return problems


def coverage_problems(attributes: dict[str, dict[str, str]] | None, classes: list[str]) -> list[str]:
    """Every class of the data has an entry and no entry names an unknown class."""
    if attributes is None:
        return []
    missing = [c for c in classes if c not in attributes]
    unknown = [c for c in attributes if c not in set(classes)]
    problems = []
    if missing:
        problems.append(
            f"{KEY}: classes {missing[:20]} have no entry; give each class its attribute values, e.g. "
            f"{missing[0]!r}: {{...}}"
        )
    if unknown:
        problems.append(
            f"{KEY}: {unknown[:20]} are not classes of the data (classes: {classes[:20]}); fix or remove them"
        )
    return problems


@dataclass(frozen=True)
class AttributeCodes:
    """Attribute names (sorted), each one's values (sorted) and, per class in class order, the index of its
    value under each attribute: codes[k][a]."""

    names: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]
    codes: tuple[tuple[int, ...], ...]

    def to_json(self) -> dict[str, object]:
        return {
            "names": list(self.names),
            "values": [list(v) for v in self.values],
            "codes": [list(c) for c in self.codes],
        }


def attribute_codes(
    attributes: dict[str, dict[str, str]] | None, classes: list[str]
) -> AttributeCodes | None:
    """The codes of a checked mapping (shape_problems and coverage_problems found nothing), or None."""
    if attributes is None:
        return None
    names = tuple(sorted(attributes[classes[0]]))
    values = tuple(tuple(sorted({attributes[c][a] for c in classes})) for a in names)
    codes = tuple(tuple(values[i].index(attributes[c][a]) for i, a in enumerate(names)) for c in classes)
    return AttributeCodes(names, values, codes)
