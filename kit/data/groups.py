"""competition.groups_file: a CSV `id,group` giving train rows a group, as group_column does from a column.

`kit init` writes one of near-duplicate image clusters (kit.data.duplicates) beside kit.yaml, its first line
a comment that marks it as kit's; a file without that line is the user's and kit never overwrites it.
Train rows the file does not list (or lists with an empty group) are each their own group.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from kit.data.encoding import decode_bytes
from kit.errors import KitError

MARKER = "# written by `kit init`"
COLUMNS = ("id", "group")
OWN_PREFIX = "\x00own:"  # the group of a row the file does not list: its own (no CSV cell holds a NUL)


def groups_file_name(config: Path) -> Path:
    """Where `kit init` writes the groups of the config `config`: beside it, named after it."""
    return config.with_name(f"{config.stem}.groups.csv")


def is_kit_groups_file(path: Path) -> bool:
    """Whether `path` is a groups file kit wrote (its first line is kit's marker)."""
    try:
        with path.open("rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return decode_bytes(first)[1].startswith(MARKER)


def write_groups_file(path: Path, ids: list[str], clusters: list[list[int]], why: str) -> None:
    """The clusters (row indices into `ids`, largest first) as `id,group`, groups named dup1, dup2, ...;
    `why` goes into the marker comment (how they were found)."""
    from kit.artifacts.atomic import atomic_write_text

    buf = io.StringIO()
    buf.write(f"{MARKER}: {why}; kit init rewrites it (delete this line to keep your edits)\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for c, rows in enumerate(clusters, start=1):
        w.writerows([ids[i], f"dup{c}"] for i in rows)
    atomic_write_text(path, buf.getvalue())


def read_groups_file(path: Path, ids: list[str]) -> list[str]:
    """The group of each train row (`ids`, in order) from the groups file; rows it does not list get a group
    of their own. Every problem at once, each with its line."""
    if not path.is_file():
        raise KitError(
            f"competition.groups_file: {path} not found; fix the path (relative to kit.yaml), run `kit init` "
            "again to write it, or remove the key"
        )
    _, text = decode_bytes(path.read_bytes())
    lines = text.splitlines(keepends=True)
    skipped = 0
    while skipped < len(lines) and (lines[skipped].startswith("#") or not lines[skipped].strip()):
        skipped += 1  # the marker and any comment above the header
    reader = csv.reader(io.StringIO("".join(lines[skipped:]), newline=""))
    header = [h.strip() for h in next(reader, [])]
    if not set(COLUMNS) <= set(header):
        raise KitError(
            f"competition.groups_file: {path} line {skipped + 1}: the header is {header}; the file needs the "
            f"columns {','.join(COLUMNS)} (a train id and its group per row)"
        )
    id_at, group_at = header.index("id"), header.index("group")
    row_of = {rid: i for i, rid in enumerate(ids)}
    groups = [f"{OWN_PREFIX}{rid}" for rid in ids]
    seen: dict[str, int] = {}
    problems: list[str] = []
    for line, row in enumerate(reader, start=skipped + 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(id_at, group_at):
            problems.append(f"line {line}: {len(row)} cell(s); each row needs an id and a group")
            continue
        rid, group = row[id_at], row[group_at].strip()
        if rid not in row_of:
            problems.append(
                f"line {line}: id '{rid}' is not a train id; write the train table's id or remove the row"
            )
        elif rid in seen:
            problems.append(
                f"line {line}: id '{rid}' is listed again (line {seen[rid]}); give each id one group"
            )
        else:
            seen[rid] = line
            if group:
                groups[row_of[rid]] = group
    if problems:
        raise KitError(f"competition.groups_file: {path}: {len(problems)} bad row(s):", problems=problems)
    return groups
