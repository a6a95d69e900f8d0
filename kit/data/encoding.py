"""Text encodings of the CSVs competitions ship: UTF-8 (with or without a BOM), then cp949 (Korean; a superset
of EUC-KR), then latin-1, which decodes any bytes. One helper for train/test tables and submission samples."""

from __future__ import annotations

import codecs

ENCODINGS = ("utf-8", "cp949", "latin-1")


def decode_bytes(raw: bytes) -> tuple[str, str]:
    """(encoding, text): 'utf-8-sig' when the bytes start with a UTF-8 BOM (stripped from the text), else the
    first of ENCODINGS that decodes them. Writing the text back in that encoding gives the same bytes."""
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", raw[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
    for encoding in ENCODINGS[:-1]:
        try:
            return encoding, raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return ENCODINGS[-1], raw.decode(ENCODINGS[-1])
