"""Class names in Korean, Japanese or Chinese render in kit's PNGs: a CJK font as a per-glyph fallback.

matplotlib's DejaVu Sans has no Hangul, kana or Han, so such class names print "Glyph ... missing from font"
warnings and come out as empty boxes. `with_cjk_fallback` wraps a plotting function so that, while it runs,
font.family is the current family (DejaVu Sans by default, so Latin text looks the same) followed by Noto Sans
CJK JP, which matplotlib (3.6+) uses for every glyph the first font lacks. The font (Hangul, kana and Han in
one file) ships in the `notojp-matplotlib` wheel; kit reads the file from the package folder without importing
the package (whose import would change matplotlib's settings for the whole process). Registered on first use,
never at import: `kit --help` does not pay for it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

CJK_PACKAGE = "notojp_matplotlib"
CJK_FONT_FILE = Path("fonts") / "NotoSansCJKjp-Regular.otf"


def cjk_font_path() -> Path | None:
    """The Noto Sans CJK font file shipped by `notojp-matplotlib`, or None when the package is missing."""
    spec = importlib.util.find_spec(CJK_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / CJK_FONT_FILE
    return path if path.is_file() else None


def register_cjk_font() -> str | None:
    """Add the CJK font to matplotlib's font manager (once per process); returns its family name."""
    from matplotlib import font_manager

    path = cjk_font_path()
    if path is None:
        return None
    if not any(Path(f.fname) == path for f in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


def font_families() -> list[str]:
    """matplotlib's current font.family with the CJK font appended as the fallback."""
    import matplotlib

    current = list(matplotlib.rcParams["font.family"])
    cjk = register_cjk_font()
    return current if cjk is None or cjk in current else [*current, cjk]


def with_cjk_fallback(fn: F) -> F:
    """Run a plotting function with the CJK fallback font in matplotlib's font.family (restored afterwards)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context({"font.family": font_families()}):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
