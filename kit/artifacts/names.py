"""Names are names, not paths: blend, member and submission names become folder and file names under the
workdir and submissions/, so they are checked before anything is read, written or replaced."""

from __future__ import annotations

import re

from kit.errors import KitError

NAME_PATTERN = re.compile(r"^\w[\w.-]*$")
MAX_NAME = 100


def plain_name(value: object, what: str) -> str:
    """Return `value` when it is a plain name (letters, digits, '_', '.', '-'; starting with a letter, digit or
    '_'); otherwise raise KitError naming the value and the fix. `what` says what the name is for
    ("blend", "member", "submission")."""
    text = str(value)
    if not NAME_PATTERN.fullmatch(text) or len(text) > MAX_NAME:
        why = (
            "it is a path, not a name"
            if any(ch in text for ch in "/\\") or text in (".", "..")
            else "a name uses letters, digits, '_', '.' and '-' only, starts with a letter, digit or '_', "
            f"and has at most {MAX_NAME} characters"
        )
        raise KitError(
            f"{what} name {text!r} is not a plain name ({why}); use a name such as 'all' or 'convnext' "
            f"(a blend is named by its spec's file name: ensembles/NAME.yaml)"
        )
    return text
