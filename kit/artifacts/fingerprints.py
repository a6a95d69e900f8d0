"""What an artifact was made from, as one record: member meta.json and winner.json write it, loading checks it.

The JSON keys (`train_ids_fingerprint`, ..., `fingerprint_parts`) are the artifact contract (docs/artifacts.md);
`Fingerprints.to_json` writes them and `from_json` reads them back (a key an older kit did not write is None).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fingerprints:
    train_ids: str  # the train ids in order
    folds: str  # the fold of every train id
    test_ids: str | None = None  # the test ids in order ("" or None: no test table)
    data: str | None = None  # train content: labels, groups, image bytes
    test: str | None = None  # test content: ids, paths, image bytes
    parts: dict[str, str] = field(default_factory=dict)  # train_labels, train_images, test_images

    def to_json(self) -> dict[str, Any]:
        return {
            "train_ids_fingerprint": self.train_ids,
            "test_ids_fingerprint": self.test_ids,
            "folds_fingerprint": self.folds,
            "data_fingerprint": self.data,
            "test_fingerprint": self.test,
            "fingerprint_parts": dict(self.parts),
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Fingerprints:
        parts = record.get("fingerprint_parts")
        return cls(
            train_ids=record.get("train_ids_fingerprint") or "",
            folds=record.get("folds_fingerprint") or "",
            test_ids=record.get("test_ids_fingerprint"),
            data=record.get("data_fingerprint"),
            test=record.get("test_fingerprint"),
            parts=dict(parts) if isinstance(parts, dict) else {},
        )

    def problems(self, now: Fingerprints, what: str = "it") -> list[str]:
        """How the current data (`now`) differ from what this record says `what` was made from."""
        out = []
        if self.train_ids != now.train_ids:
            out.append("its train ids differ from the current train table")
        if self.folds != now.folds:
            out.append("its folds differ from the current folds (blending OOF from different splits leaks)")
        if now.test_ids is not None and self.test_ids != now.test_ids:
            out.append("its test ids differ from the current test table")
        return out + self.content_changes(now, what)

    def content_changes(self, now: Fingerprints, what: str = "it") -> list[str]:
        """How the train or test content (labels, groups, image bytes) differ, the ids aside."""
        out: list[str] = []

        def part(key: str, message: str) -> None:
            if key in self.parts and key in now.parts and self.parts[key] != now.parts[key]:
                out.append(message)

        if now.data is not None and self.data != now.data:
            n = len(out)
            part("train_labels", f"the train labels or groups changed since {what} was made (same ids)")
            part("train_images", f"train image files changed since {what} was made (same names, other bytes)")
            if len(out) == n and self.train_ids == now.train_ids:
                out.append(
                    f"the train data (labels, groups or image bytes) differ from what {what} was made from"
                )
        if now.test is not None and self.test != now.test:
            n = len(out)
            part(
                "test_images",
                f"test image files changed since {what} was made: its test predictions are for the old images",
            )
            if len(out) == n and self.test_ids == now.test_ids:
                out.append(
                    f"the test images differ from what {what} was made from"
                    if self.test
                    else f"{what} records no test-image fingerprint (an older kit made it)"
                )
        return out
