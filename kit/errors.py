"""The one error type users see. Only the CLI catches it; library code raises it with the fix in the text."""

from __future__ import annotations

MAX_PROBLEMS_SHOWN = 30
MAX_LINE = 600


def clip(text: str, limit: int = MAX_LINE) -> str:
    """`text` cut in the middle to at most `limit` characters: the start names the key, the end the fix."""
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]} ... {text[-keep:]}"


def first_shown(items: list[str]) -> tuple[list[str], int]:
    """The items a message prints (the first MAX_PROBLEMS_SHOWN, each clipped) and how many it leaves out."""
    return [clip(p) for p in items[:MAX_PROBLEMS_SHOWN]], max(0, len(items) - MAX_PROBLEMS_SHOWN)


class KitError(Exception):
    """A problem the user can fix: the message names the file, key or row and what to do instead.

    What is printed is bounded (MAX_PROBLEMS_SHOWN problems, MAX_LINE characters a line, so an error never
    echoes a whole input); `problems` keeps every one."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        text = clip(message, 4 * MAX_LINE)
        items, rest = first_shown(self.problems)
        shown = [f"  - {p}" for p in items] + ([f"  ... and {rest} more"] if rest else [])
        if shown:
            text = text + "\n" + "\n".join(shown)
        super().__init__(text)


def os_error_fix(e: OSError, target: str = "`workdir:` (or --out)") -> str:
    """What to do about an OSError, for the setting that chose the place (`target`: workdir, --out, TMPDIR)."""
    import errno

    fixes = {
        errno.ENOSPC: f"the disk is full: free space there, or point {target} at a disk with room",
        errno.EDQUOT: f"the disk quota is used up: free space there, or point {target} elsewhere",
        errno.EROFS: f"that filesystem is read-only: point {target} at a writable folder",
        errno.EACCES: f"you may not write or read there: fix its permissions, or point {target} at a folder of "
        "yours",
        errno.EPERM: f"the system refused the operation: fix its permissions, or point {target} elsewhere",
        errno.ENAMETOOLONG: "a file name is longer than the filesystem allows (255 bytes a name): shorten it",
        errno.EMFILE: "too many open files: raise the limit (`ulimit -n 4096`) or lower `num_workers`",
        errno.EIO: "the disk reported an I/O error: check the disk, or use another folder",
    }
    return fixes.get(e.errno or -1, f"check that the path exists and is usable, or point {target} elsewhere")


def describe_os_error(e: OSError) -> str:
    """An OSError as a user's message: the path, what the system said, and what to do about it."""
    paths = [p for p in (e.filename, e.filename2) if p is not None]
    where = " -> ".join(str(p) for p in paths) or "(no path given)"
    return f"{where}: {e.strerror or str(e)}; {os_error_fix(e)}"
