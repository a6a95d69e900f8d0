"""The submission follows the competition's metric: probabilities for probability metrics, labels for label
metrics, ranked lists for ranking metrics, and a note wherever the metric overrode the sample's values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kit.errors import KitError
from kit.submit.check import check_submission_rows
from kit.submit.make import build_rows
from kit.submit.sample import detect_layout, read_csv_exact


def sample_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sample_submission.csv"
    p.write_text(text, encoding="utf-8")
    return p


def built(tmp_path: Path, text: str, classes: list[str], metric: str | None, probs: np.ndarray):
    sample = read_csv_exact(sample_file(tmp_path, text))
    layout = detect_layout(sample, classes, metric=metric)
    ids = [r[0] for r in sample.rows]
    sub = build_rows(sample, layout, ids, probs)
    rep = check_submission_rows(sub, sample, layout)
    assert rep.ok, rep.problems
    return layout, sub.rows


def test_roc_auc_with_a_zero_filled_label_column_gets_probabilities(tmp_path: Path) -> None:
    """Histopathologic cancer detection: `id,label` pre-filled with 0, scored by ROC AUC."""
    text = "id,label\nf38a,0\nc18f,0\n755d,0\n"
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    layout, rows = built(tmp_path, text, ["0", "1"], "roc_auc", probs)
    assert layout.kind == "binary_proba" and layout.positive == 1
    assert "roc_auc scores probabilities" in layout.note
    assert [float(r[1]) for r in rows] == pytest.approx([0.1, 0.8, 0.4])
    # without the metric the same sample reads as labels (what a label metric wants)
    layout2, rows2 = built(tmp_path, text, ["0", "1"], "accuracy", probs)
    assert layout2.kind == "label" and [r[1] for r in rows2] == ["0", "1", "0"] and layout2.note == ""


def test_label_metric_never_gets_probabilities(tmp_path: Path) -> None:
    text = "id,target\na,0.5\nb,0.5\n"
    probs = np.array([[0.3, 0.7], [0.8, 0.2]])
    layout, rows = built(tmp_path, text, ["cat", "dog"], "macro_f1", probs)
    assert layout.kind == "label" and [r[1] for r in rows] == ["dog", "cat"]
    assert "macro_f1 scores labels" in layout.note and "probabilities" in layout.note
    # with no metric given, a float column for two classes stays binary_proba
    assert built(tmp_path, text, ["cat", "dog"], None, probs)[0].kind == "binary_proba"


def test_k_space_separated_labels_are_topk_even_with_placeholder_labels(tmp_path: Path) -> None:
    """Humpback whale: `Image,Id` with 'new_whale w_1 w_2 w_3 w_4' in every row, MAP@5."""
    text = "Image,Id\n00.jpg,new_whale w_1 w_2 w_3 w_4\n01.jpg,new_whale w_1 w_2 w_3 w_4\n"
    classes = ["w_a", "w_b", "w_c", "w_d", "w_e", "w_f"]
    probs = np.array([[0.1, 0.18, 0.3, 0.05, 0.15, 0.22], [0.5, 0.1, 0.1, 0.1, 0.1, 0.1]])
    for metric in ("map_at_k", None):  # the sample alone decides: never one label
        layout, rows = built(tmp_path, text, classes, metric, probs)
        assert layout.kind == "topk" and layout.k == 5
        assert "not classes" in layout.note and "new_whale" in layout.note
        assert rows[0][1].split() == ["w_c", "w_f", "w_b", "w_e", "w_a"]
        assert len(rows[1][1].split()) == 5 and rows[1][1].split()[0] == "w_a"


def test_ranking_metric_on_a_one_label_sample_writes_a_ranked_list(tmp_path: Path) -> None:
    text = "id,label\na,x\nb,x\n"
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    layout, rows = built(tmp_path, text, ["x", "y", "z"], "top_k_accuracy", probs)
    assert layout.kind == "topk" and "ranked list" in layout.note
    assert [r[1] for r in rows] == ["y z x", "x y z"]


def test_probability_metric_with_one_column_for_many_classes_is_refused(tmp_path: Path) -> None:
    sample = read_csv_exact(sample_file(tmp_path, "id,label\na,x\n"))
    with pytest.raises(KitError, match="log_loss scores probabilities.*one column per class"):
        detect_layout(sample, ["x", "y", "z"], metric="log_loss")
