"""Submission files per output kind: real sample CSVs in tmp_path, written, re-read, checked."""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

import numpy as np
import pytest

from kit.config.schema import SubmissionConfig
from kit.errors import KitError
from kit.submit.check import check_submission_rows, raise_if_failed
from kit.submit.format import match_ids, render_csv
from kit.submit.make import build_rows
from kit.submit.sample import CsvFile, Layout, detect_layout, read_csv_exact
from kit.submit.write import write_submission


def write_bytes(path: Path, text: str, *, bom: bool = False, encoding: str = "utf-8") -> Path:
    data = text.encode(encoding)
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + data)
    return path


def random_probs(n: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = np.exp(rng.normal(scale=2.0, size=(n, c)))
    return z / z.sum(axis=1, keepdims=True)


def submit_to_file(
    tmp_path: Path,
    sample_path: Path,
    classes: list[str],
    test_ids: list[str],
    probs: np.ndarray,
    cfg: SubmissionConfig | None = None,
    id_hint: str | None = None,
) -> tuple[Path, CsvFile, Layout]:
    """The library path of `kit submit` after the source is loaded: detect, build, check, write."""
    sample = read_csv_exact(sample_path, "sample submission")
    layout = detect_layout(sample, classes, cfg, id_hint)
    sub = build_rows(sample, layout, test_ids, probs)
    rep = check_submission_rows(sub, sample, layout)
    raise_if_failed(rep, "built", "; nothing was written")
    out = tmp_path / "out" / "sub.csv"
    write_submission(out, render_csv(sample, sub.rows), sample.encoding, {"test": True})
    reread = read_csv_exact(out)
    recheck = check_submission_rows(reread, sample, layout)
    assert recheck.ok, recheck.problems
    assert recheck.warnings == []
    return out, sample, layout


def parse(path: Path, encoding: str = "utf-8-sig") -> list[list[str]]:
    with path.open(newline="", encoding=encoding) as f:
        return list(csv.reader(f))


# ---------------------------------------------------------------- output kinds


def test_label_korean_names_with_comma_prefilled(tmp_path: Path) -> None:
    classes = ["가구수정", "걸레받이수정", "창틀,문틀수정", "훼손"]
    ids = [f"TEST_{i:03d}" for i in range(6)]
    sample = write_bytes(tmp_path / "sample.csv", "id,label\n" + "".join(f"{i},가구수정\n" for i in ids))
    probs = random_probs(6, 4)
    probs[2] = [0.05, 0.05, 0.85, 0.05]  # a row that must get the name with a comma
    test_ids = ids[::-1]  # the test table's order differs from the sample's
    out, _, layout = submit_to_file(tmp_path, sample, classes, test_ids, probs[::-1])
    assert layout.kind == "label"
    rows = parse(out)
    assert rows[0] == ["id", "label"]
    assert [r[0] for r in rows[1:]] == ids
    assert [r[1] for r in rows[1:]] == [classes[i] for i in probs.argmax(1)]
    assert '"창틀,문틀수정"' in out.read_text("utf-8")
    assert not out.read_bytes().startswith(codecs.BOM_UTF8)


def test_integer_labels_ids_with_jpg(tmp_path: Path) -> None:
    classes = [str(i) for i in range(12)]  # integer class names sort numerically
    sample_ids = [f"img_{i:03d}.jpg" for i in range(9)]
    sample = write_bytes(tmp_path / "s.csv", "image_id,class\n" + "".join(f"{i},0\n" for i in sample_ids))
    test_ids = [f"img_{i:03d}" for i in range(9)]  # a folder layout: ids without the extension
    probs = random_probs(9, 12, seed=1)
    out, _, layout = submit_to_file(tmp_path, sample, classes, test_ids, probs)
    assert layout.kind == "label"
    rows = parse(out)
    assert [r[0] for r in rows[1:]] == sample_ids  # ids exactly as the sample writes them
    assert [int(r[1]) for r in rows[1:]] == probs.argmax(1).tolist()


def test_label_codes_for_named_classes(tmp_path: Path) -> None:
    """Different integers in 0..K-1 beside named classes can only be class indices; a constant 0 could be
    a placeholder for the names, so it is refused naming competition.submission.kind."""
    classes = ["cat", "dog", "fox"]
    sample = write_bytes(tmp_path / "s.csv", "id,label\na,0\nb,2\nc,1\n")
    probs = random_probs(3, 3, seed=2)
    out, _, layout = submit_to_file(tmp_path, sample, classes, ["a", "b", "c"], probs)
    assert layout.kind == "label_code" and "competition.submission.kind: label" in layout.note
    assert [int(r[1]) for r in parse(out)[1:]] == probs.argmax(1).tolist()
    constant = read_csv_exact(write_bytes(tmp_path / "z.csv", "id,label\na,0\nb,0\nc,0\n"))
    with pytest.raises(KitError, match="competition.submission.kind: label .names. or label_code"):
        detect_layout(constant, classes)


def test_proba_columns_in_their_own_order_with_bom(tmp_path: Path) -> None:
    classes = ["cat", "dog", "fox", "owl"]
    header = "id,owl,cat,fox,dog"
    ids = ["0001", "0002", "0010", "0100"]
    body = "".join(f"{i},0.25,0.25,0.25,0.25\n" for i in ids)
    sample = write_bytes(tmp_path / "s.csv", f"{header}\n{body}", bom=True)
    probs = random_probs(4, 4, seed=3)
    out, _, layout = submit_to_file(tmp_path, sample, classes, ids, probs)
    assert layout.kind == "proba"
    assert layout.col_class == [3, 0, 2, 1]
    assert out.read_bytes().startswith(codecs.BOM_UTF8)
    rows = parse(out)
    assert rows[0] == header.split(",")
    assert [r[0] for r in rows[1:]] == ids  # zero padding kept
    got = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(got, probs[:, [3, 0, 2, 1]], atol=1e-8)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-6)


def test_proba_hundreds_of_columns(tmp_path: Path) -> None:
    classes = [f"species_{i:03d}" for i in range(300)]
    order = np.random.default_rng(4).permutation(300)
    ids = [f"t{i}" for i in range(20)]
    header = "id," + ",".join(classes[j] for j in order)
    sample = write_bytes(tmp_path / "s.csv", header + "\n" + "".join(f"{i}" + ",0" * 300 + "\n" for i in ids))
    probs = random_probs(20, 300, seed=5)
    out, _, layout = submit_to_file(tmp_path, sample, classes, ids, probs)
    assert layout.kind == "proba"
    got = np.array([[float(x) for x in r[1:]] for r in parse(out)[1:]])
    np.testing.assert_allclose(got, probs[:, order], atol=1e-8)


def test_binary_probability_column(tmp_path: Path) -> None:
    sample = write_bytes(tmp_path / "s.csv", "id,target\n1,0.5\n2,0.5\n3,0.5\n")
    probs = random_probs(3, 2, seed=6)
    out, _, layout = submit_to_file(tmp_path, sample, ["0", "1"], ["1", "2", "3"], probs)
    assert layout.kind == "binary_proba" and layout.positive == 1
    np.testing.assert_allclose([float(r[1]) for r in parse(out)[1:]], probs[:, 1], atol=1e-8)
    # a column named after a class holds that class's probability
    named = write_bytes(tmp_path / "n.csv", "id,cat\n1,0\n2,0\n3,0\n")
    out, _, layout = submit_to_file(tmp_path, named, ["cat", "dog"], ["1", "2", "3"], probs)
    assert layout.kind == "binary_proba" and layout.positive == 0
    np.testing.assert_allclose([float(r[1]) for r in parse(out)[1:]], probs[:, 0], atol=1e-8)


def test_topk_labels_for_map_at_k(tmp_path: Path) -> None:
    classes = ["new_whale"] + [f"w_{i:04d}" for i in range(30)]
    ids = [f"{i:05x}.jpg" for i in range(7)]
    body = "".join(f"{i},new_whale w_0001 w_0002 w_0003 w_0004\n" for i in ids)
    sample = write_bytes(tmp_path / "s.csv", "Image,Id\n" + body)
    probs = random_probs(7, 31, seed=7)
    out, _, layout = submit_to_file(tmp_path, sample, classes, ids, probs)
    assert layout.kind == "topk" and layout.k == 5
    for r, p in zip(parse(out)[1:], probs, strict=True):
        assert r[1].split() == [classes[c] for c in np.argsort(-p)[:5]]
    # kit.yaml's k wins when set
    _, _, layout = submit_to_file(tmp_path, sample, classes, ids, probs, SubmissionConfig(kind="topk", k=3))
    assert layout.k == 3


def test_empty_column_and_odd_headers_copied_verbatim(tmp_path: Path) -> None:
    classes = ["a", "b", "c"]
    probs = random_probs(3, 3, seed=8)
    want = [classes[i] for i in probs.argmax(1)]
    cases = {
        "trailing_comma": ("id,label,\r\n", "x1,,\r\nx2,,\r\nx3,,\r\n"),
        "space_after_comma": ("id, label\n", "x1,a\nx2,a\nx3,a\n"),
        "unnamed_index": (",id,label\n", "0,x1,\n1,x2,\n2,x3,\n"),
    }
    for name, (header, body) in cases.items():
        sample = write_bytes(tmp_path / f"{name}.csv", header + body)
        out, _, layout = submit_to_file(tmp_path, sample, classes, ["x1", "x2", "x3"], probs)
        text = out.read_bytes().decode()
        assert text.startswith(header), name  # header line and its line ending as found
        rows = parse(out)
        if name == "unnamed_index":
            assert [r[:2] for r in rows[1:]] == [["0", "x1"], ["1", "x2"], ["2", "x3"]]
        assert [r[layout.value_cols[0]] for r in rows[1:]] == want, name
        if name == "trailing_comma":
            assert all(len(r) == 3 and r[2] == "" for r in rows[1:])
            assert "\r\n" in text and "\n" not in text.replace("\r\n", "")


def test_cp949_sample_stays_cp949(tmp_path: Path) -> None:
    classes = ["가구수정", "창틀,문틀수정"]
    sample = write_bytes(tmp_path / "s.csv", "id,label\nA,가구수정\nB,가구수정\n", encoding="cp949")
    probs = np.array([[0.1, 0.9], [0.8, 0.2]])
    out, s, _ = submit_to_file(tmp_path, sample, classes, ["A", "B"], probs)
    assert s.encoding == "cp949"
    assert parse(out, "cp949")[1:] == [["A", "창틀,문틀수정"], ["B", "가구수정"]]


# ---------------------------------------------------------------- id matching


def test_match_ids_with_and_without_extension() -> None:
    assert match_ids(["0001.jpg", "0002.JPG", "0003"], ["0003.tif", "0001", "0002"]).tolist() == [1, 2, 0]
    assert match_ids(["0001"], ["0001", "1"]).tolist() == [0]  # exact first; zero padding matters
    with pytest.raises(KitError) as e:
        match_ids(["a.jpg", "zz", "yy.png"], ["a", "b", "c"], lines=[2, 3, 4])
    msg = str(e.value)
    assert "2 of 3" in msg and "line 3: id 'zz'" in msg and "line 4: id 'yy.png'" in msg
    with pytest.raises(KitError, match=r"line 3: id 'a.png' is test id 'a' again \(line 2\)"):
        match_ids(["a.jpg", "a.png"], ["a", "b"])


# ---------------------------------------------------------------- validation


@pytest.fixture
def label_sample(tmp_path: Path) -> tuple[CsvFile, Layout]:
    sample = read_csv_exact(write_bytes(tmp_path / "s.csv", "id,label\n0001,a\n0002,a\n0003,a\n0004,a\n"))
    return sample, detect_layout(sample, ["a", "b", "창틀,문틀수정"])


def check_text(tmp_path: Path, sample: CsvFile, layout: Layout, text: str) -> list[str]:
    rep = check_submission_rows(read_csv_exact(write_bytes(tmp_path / "cand.csv", text)), sample, layout)
    return rep.problems


def test_check_reports_every_problem_with_its_line(
    tmp_path: Path, label_sample: tuple[CsvFile, Layout]
) -> None:
    sample, layout = label_sample
    text = 'id,label\n0001,a\n0002,c\n0002,b\n1,b\n0003,\n0005,nan\n"0006","창틀,문틀수정"\n'
    problems = check_text(tmp_path, sample, layout, text)
    assert "line 3 (id '0002'): 'c' is not a class" in problems
    assert "line 4 (id '0002'): id repeats (first on line 3)" in problems
    assert "line 5 (id '1'): id is not in the sample submission" in problems
    assert "line 6 (id '0003'): empty or NaN value in column 'label'" in problems
    assert "line 7 (id '0005'): id is not in the sample submission" in problems
    assert "line 7 (id '0005'): empty or NaN value in column 'label'" in problems
    assert "line 8 (id '0006'): id is not in the sample submission" in problems
    assert "id '0004' (sample line 5) is missing" in problems
    assert len(problems) == 8, problems
    wrong_header = check_text(tmp_path, sample, layout, "id,Label\n0001,a\n0002,a\n0003,a\n0004,a\n")
    assert len(wrong_header) == 2 and "header" in wrong_header[0]  # and the 'label' column is missing


def test_check_probabilities(tmp_path: Path) -> None:
    sample = read_csv_exact(write_bytes(tmp_path / "s.csv", "id,dog,cat\nx,0.5,0.5\ny,0.5,0.5\nz,0.5,0.5\n"))
    layout = detect_layout(sample, ["cat", "dog"])
    problems = check_text(tmp_path, sample, layout, "id,dog,cat\nx,1.2,-0.2\ny,0.3,0.3\nz,NaN,1\n")
    assert problems == [
        "line 2 (id 'x'): column 'dog' = 1.2 is outside [0, 1]",
        "line 2 (id 'x'): column 'cat' = -0.2 is outside [0, 1]",
        "line 3 (id 'y'): probabilities sum to 0.600000, not 1",
        "line 4 (id 'z'): column 'dog' holds 'NaN', not a probability",
    ]


def test_rows_out_of_order_is_a_warning(tmp_path: Path, label_sample: tuple[CsvFile, Layout]) -> None:
    sample, layout = label_sample
    rep = check_submission_rows(
        read_csv_exact(write_bytes(tmp_path / "c.csv", "id,label\n0002,a\n0001,a\n0003,a\n0004,b\n")),
        sample,
        layout,
    )
    assert rep.ok and len(rep.warnings) == 1 and "line 2" in rep.warnings[0]


def test_nan_probabilities_are_refused_with_their_row(
    tmp_path: Path, label_sample: tuple[CsvFile, Layout]
) -> None:
    sample, layout = label_sample
    probs = random_probs(4, 3, seed=9)
    probs[2, 1] = np.nan
    sub = build_rows(sample, layout, ["0001", "0002", "0003", "0004"], probs)
    rep = check_submission_rows(sub, sample, layout)
    assert rep.problems == ["line 4 (id '0003'): empty or NaN value in column 'label'"]
    with pytest.raises(KitError, match="nothing was written"):
        raise_if_failed(rep, "x", "; nothing was written")


def test_detection_errors_name_the_fix(tmp_path: Path) -> None:
    bad_cols = read_csv_exact(write_bytes(tmp_path / "a.csv", "id,cat,dgo,fox\nx,0,0,0\n"))
    with pytest.raises(KitError) as e:
        detect_layout(bad_cols, ["cat", "dog", "fox"])
    assert "column 'dgo' is not a class name" in str(e.value) and "['dog']" in str(e.value)
    probs_multiclass = read_csv_exact(write_bytes(tmp_path / "b.csv", "id,target\nx,0.5\n"))
    with pytest.raises(KitError, match=r"competition.submission.kind"):
        detect_layout(probs_multiclass, ["a", "b", "c"])
    with pytest.raises(KitError, match="positive_class 'zebra'"):
        detect_layout(probs_multiclass, ["a", "b"], SubmissionConfig(positive_class="zebra"))
    with pytest.raises(KitError, match="id_column 'key'"):
        detect_layout(probs_multiclass, ["a", "b"], SubmissionConfig(id_column="key"))
    # an explicit kind overrides the guess
    forced = detect_layout(
        read_csv_exact(write_bytes(tmp_path / "c.csv", "id,label\nx,a\n")),
        ["a", "b"],
        SubmissionConfig(kind="label_code"),
    )
    assert forced.kind == "label_code"


def test_render_quotes_like_csv_module() -> None:
    sample = CsvFile(Path("s.csv"), "id,label", ["id", "label"], [["1", ""]], [2], "utf-8")
    text = render_csv(sample, [["1", 'say "hi", ok']])
    assert list(csv.reader(io.StringIO(text))) == [["id", "label"], ["1", 'say "hi", ok']]


def test_submission_section_in_kit_yaml(tmp_path: Path) -> None:
    from kit.config.load import load_config

    base = "competition:\n  root: .\n  train: train\n  sample_submission: s.csv\n  submission:\n"
    (tmp_path / "kit.yaml").write_text(base + "    kind: topk\n    k: 5\n", encoding="utf-8")
    sub = load_config(tmp_path / "kit.yaml").competition.submission
    assert sub is not None and sub.kind == "topk" and sub.k == 5 and "k" in sub.model_fields_set
    (tmp_path / "kit.yaml").write_text(base + "    kinde: proba\n    k: 0\n", encoding="utf-8")
    with pytest.raises(KitError) as e:
        load_config(tmp_path / "kit.yaml")
    assert "competition.submission.kinde: unknown key; did you mean 'kind'?" in str(e.value)
    assert "competition.submission.k:" in str(e.value)
