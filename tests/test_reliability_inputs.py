"""Issue 12, inputs and messages: wide images, table encodings, validate's reach, clear messages for odd
labels and classes, blank groups, oversized image caches, CJK class names in PNGs. Real files, real CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY_INIT_MEMBER, invoke, set_args, write_csv, write_image
from test_init import make_dacon
from train_helpers import make_competition, member, write_config
from typer.testing import CliRunner

from kit.data.cache import decode_image

# ---------------------------------------------------------------- 8: 16-bit PNG / TIFF


def gradient16(size: int = 32, flip: bool = False) -> np.ndarray:
    """A uint16 ramp over the full 16-bit range, left to right (or right to left)."""
    ramp = np.linspace(0, 65535, size * size).round().astype(np.uint16).reshape(size, size)
    return ramp[:, ::-1].copy() if flip else ramp


def save16(path: Path, a: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    with Image.open(path) as im:  # really stored as 16-bit
        assert im.mode.startswith("I;16"), im.mode
    return path


def test_16bit_png_and_tiff_train_from_the_gradient_not_clipped(tmp_path: Path, runner: CliRunner) -> None:
    data = tmp_path / "data"
    rows, test_rows, expected = [], [], {}
    for i in range(8):
        a = gradient16(flip=bool(i % 2))
        name = f"train/{i}.{'png' if i < 4 else 'tif'}"
        save16(data / name, a)
        rows.append([str(i), name, "left" if i % 2 else "right"])
        expected[i] = np.rint(a / 257.0)
    for j in range(2):
        save16(data / f"test/t{j}.png", gradient16())
        test_rows.append([f"t{j}", f"test/t{j}.png"])
    write_csv(data / "train.csv", ["id", "img_path", "label"], rows)
    write_csv(data / "test.csv", ["id", "img_path"], test_rows)
    cfg = write_config(
        tmp_path / "kit.yaml", data, {"cnx": member(batch_size=4, resize="squash", crop_pct=1.0)}
    )
    r = invoke(runner, ["train", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    (cache,) = (tmp_path / "work" / "cache" / "images").glob("train-*-d3.npy")  # the data, not its index
    arr = np.load(cache).reshape(8, 32, 32, 3)  # squashed: every image 32 x 32
    for i, want in expected.items():
        got = arr[i].astype(np.float64)
        assert np.abs(got - want[:, :, None]).max() <= 1, i  # x / 257, every channel
        assert len(np.unique(arr[i])) > 200  # a gradient, not 0/255


def test_other_modes_and_exif_orientation_still_decode(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    gray = write_image(tmp_path / "g.png", seed=1, size=(16, 16), mode="L")
    out = decode_image(gray, 16)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == np.asarray(Image.open(gray))).all()
    rgba = np.dstack([rgb, np.full((16, 24), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert np.array_equal(
        decode_image(tmp_path / "a.png", 16),
        np.asarray(Image.fromarray(rgb).resize((16, 16), Image.Resampling.BICUBIC)),
    )
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    want = np.asarray(
        Image.open(tmp_path / "p.png").convert("RGB").resize((16, 16), Image.Resampling.BICUBIC)
    )
    assert np.array_equal(decode_image(tmp_path / "p.png", 16), want)
    # EXIF orientation 6: stored 24 wide x 16 high, shown rotated 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "r.jpg", exif=exif, quality=100)
    shown = np.asarray(Image.open(tmp_path / "r.jpg").transpose(Image.Transpose.ROTATE_270))
    got = decode_image(tmp_path / "r.jpg", 16)
    resized = np.asarray(Image.fromarray(shown).resize((16, 16), Image.Resampling.BICUBIC))
    assert np.array_equal(got, resized)


# ---------------------------------------------------------------- 9: encodings of train/test tables


def reencode(path: Path, encoding: str) -> None:
    path.write_bytes(path.read_text(encoding="utf-8").encode(encoding))


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr", "utf-8-sig"])
def test_korean_tables_in_cp949_init_and_fold(tmp_path: Path, runner: CliRunner, encoding: str) -> None:
    data = make_dacon(tmp_path / "data")
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        reencode(data / name, encoding)
    if encoding != "utf-8-sig":
        with pytest.raises(UnicodeDecodeError):  # what kit read the tables as before
            (data / "train.csv").read_text(encoding="utf-8")
    out = tmp_path / "kit.yaml"
    r = invoke(runner, ["init", str(data), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "label column 'label' (4 classes)" in r.output
    r = invoke(runner, ["folds", "-c", str(out), "--set", "folds.k=2"])
    assert r.exit_code == 0, r.output
    for name in ("가구수정", "걸레받이수정", "창틀,문틀수정", "오염"):
        assert name in r.output
    # `kit init`'s member wants hub weights, which validate refuses offline as train does: the tiny one.
    # The sample holds only '0' for named classes: validate names the key that says names or indices
    r = invoke(runner, ["validate", str(out), *set_args(TINY_INIT_MEMBER)])
    assert r.exit_code == 1 and "set competition.submission.kind: label (names)" in r.output, r.output
    r = invoke(
        runner, ["validate", str(out), *set_args([*TINY_INIT_MEMBER, "competition.submission.kind=label"])]
    )
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------- 10: validate fails where train/submit would


def test_validate_fails_on_what_train_or_submit_would_refuse(tmp_path: Path, runner: CliRunner) -> None:
    data = make_competition(tmp_path / "data")
    write_csv(data / "sample_submission.csv", ["id", "label"], [[f"t{j:03d}", "cat"] for j in range(8)])
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    raw = yaml.safe_load(cfg.read_text())
    raw["competition"]["sample_submission"] = "sample_submission.csv"
    cfg.write_text(yaml.safe_dump(raw))
    r = invoke(runner, ["validate", str(cfg)])
    assert r.exit_code == 0, r.output

    def fails(*sets: str) -> str:
        args = ["validate", str(cfg)] + [x for s in sets for x in ("--set", s)]
        r = invoke(runner, args)
        assert r.exit_code == 1, r.output
        return r.output

    assert "competition.train:" in fails("competition.train=gone.csv") and "does not exist" in fails(
        "competition.train=gone.csv"
    )
    assert "competition.sample_submission: " in fails("competition.sample_submission=nope.csv")
    assert "competition.sample_submission is not set" in fails("competition.sample_submission=null")
    assert "competition.test is not set" in fails("competition.test=null")
    (data / "train" / "005.png").unlink()  # the train table points at a missing image
    assert "train.csv row 7: image 'train/005.png' not found" in fails()
    write_image(data / "train" / "005.png")
    assert "folds.k = 40 but there are only 34 train images" in fails("folds.k=40")
    write_csv(data / "sample_submission.csv", ["id", "label"], [["x1", "cat"]])
    assert "sample submission ids do not match" in fails()


# ---------------------------------------------------------------- 11: clear messages for odd labels and classes


def labelled(root: Path, labels: list[str], header: str = "label") -> Path:
    rows = []
    for i, lab in enumerate(labels):
        write_image(root / "img" / f"{i}.png", seed=i)
        rows.append([str(i), f"img/{i}.png", lab])
    write_csv(root / "train.csv", ["id", "path", header], rows)
    return root


def kit_yaml(path: Path, root: Path, **comp: object) -> Path:
    c = {"root": str(root), "train": "train.csv", "id_column": "id", "image_column": "path"}
    c["label_column"] = "label"
    c.update(comp)
    path.write_text(yaml.safe_dump({"competition": c, "folds": {"k": 2}, "workdir": str(root / "work")}))
    return path


def test_listed_class_without_images_is_named(tmp_path: Path, runner: CliRunner) -> None:
    data = labelled(tmp_path / "d", ["a", "b"] * 4)
    cfg = kit_yaml(tmp_path / "kit.yaml", data, classes=["a", "b", "zebra"])
    r = invoke(runner, ["folds", "-c", str(cfg)])
    assert r.exit_code == 1
    assert "competition.classes lists ['zebra'] but no train image has that label" in r.output
    assert "remove it from competition.classes" in r.output and "Traceback" not in r.output


def test_nan_and_empty_labels_name_their_rows(tmp_path: Path, runner: CliRunner) -> None:
    data = labelled(tmp_path / "d", ["a", "NaN", "b", "nan", "a", "", "b", "a"])
    cfg = kit_yaml(tmp_path / "kit.yaml", data)
    r = invoke(runner, ["folds", "-c", str(cfg)])
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    assert "train.csv row 3: label 'NaN' in column 'label' is a missing value" in out
    assert "train.csv row 5: label 'nan'" in out and "row 7: empty label" in out
    assert "fill in the class or remove the row" in out


def test_integer_class_names_in_yaml_are_strings(tmp_path: Path, runner: CliRunner) -> None:
    data = labelled(tmp_path / "d", ["0", "1"] * 4)
    cfg = tmp_path / "kit.yaml"
    kit_yaml(cfg, data)
    raw = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump(raw).replace("competition:\n", "competition:\n  classes: [1, 0]\n"))
    assert yaml.safe_load(cfg.read_text())["competition"]["classes"] == [1, 0]  # ints, as YAML reads them
    r = invoke(runner, ["folds", "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    assert r.output.index("│ 1 ") < r.output.index("│ 0 ")  # the config's order
    cfg.write_text(cfg.read_text().replace("classes: [1, 0]", "classes: [yes, no]"))
    r = invoke(runner, ["validate", str(cfg)])
    assert r.exit_code == 1 and "YAML read True as true/false" in r.output and "quote it" in r.output


def test_set_on_an_unknown_member_suggests_the_name(tmp_path: Path, runner: CliRunner) -> None:
    data = make_competition(tmp_path / "data")
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member()})
    for cmd in (["train"], ["validate", str(cfg)]):
        args = [*cmd, "--set", "members.cnxx.epochs=1"] + (["-c", str(cfg)] if cmd == ["train"] else [])
        r = invoke(runner, args, cwd=tmp_path)
        assert r.exit_code == 1
        assert "no member 'cnxx'; did you mean 'cnx'?" in r.output and "kind" not in r.output
    assert not (tmp_path / "work" / "members").exists()
    # a whole new member through --set still works
    new = ["--set", "members.b.kind=timm", "--set", "members.b.model=test_convnext"]
    r = invoke(runner, ["folds", "-c", str(cfg), *new])
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------- 12: blank groups


def grouped(root: Path, n_blank: int) -> Path:
    rows = []
    for i in range(40):
        write_image(root / "img" / f"{i}.png", seed=i, size=(8, 8))
        group = "" if i < n_blank else f"p{i % 5}"
        rows.append([str(i), f"img/{i}.png", "ab"[i % 2], group])
    write_csv(root / "train.csv", ["id", "path", "label", "patient"], rows)
    return root


def test_blank_groups_are_each_their_own_group_and_counted(tmp_path: Path, runner: CliRunner) -> None:
    data = grouped(tmp_path / "d", n_blank=20)
    cfg = kit_yaml(tmp_path / "kit.yaml", data, group_column="patient")
    r = invoke(runner, ["folds", "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "20 row(s) have a blank 'patient': each is its own group" in " ".join(r.output.split())
    with (data / "work" / "folds.csv").open() as f:
        fold = {row["id"]: int(row["fold"]) for row in csv.DictReader(f)}
    blank_folds = [fold[str(i)] for i in range(20)]
    assert set(blank_folds) == {0, 1}  # one big group would sit in a single fold
    for g in range(5):  # real groups still stay on one side
        assert len({fold[str(i)] for i in range(20, 40) if i % 5 == g}) == 1

    cfg = kit_yaml(tmp_path / "kit.yaml", data, group_column="patient", blank_groups="error")
    r = invoke(runner, ["folds", "-c", str(cfg)])
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    assert "train.csv row 2: blank group in column 'patient'" in out and "row 21: blank group" in out
    assert "set blank_groups: own" in out
    assert invoke(runner, ["validate", str(cfg)]).exit_code == 1


# ---------------------------------------------------------------- 17: CJK class names in every PNG kit writes

CJK = ["가구수정", "ひらがなカタカナ", "汉字类别"]  # Korean, Japanese, Chinese


def cjk_workspace(tmp_path: Path) -> Path:
    """A competition whose classes are Korean, Japanese and Chinese, and two members' logits written the way
    `kit train` writes them (kit.artifacts.member.write_member)."""
    from kit.artifacts.member import write_member
    from kit.config.load import load_config
    from kit.workspace import open_workspace

    data = make_competition(tmp_path / "data")
    text = (data / "train.csv").read_text(encoding="utf-8")
    for old, new in zip(["cat", "dog", "eel"], CJK, strict=True):
        text = text.replace(f",{old}\n", f",{new}\n")
    (data / "train.csv").write_text(text, encoding="utf-8")
    cfg = write_config(tmp_path / "kit.yaml", data, {})
    ws = open_workspace(load_config(cfg))
    assert ws.classes == sorted(CJK)
    rng = np.random.default_rng(0)
    assert ws.train.labels is not None and ws.test is not None
    for name in ("a", "b"):
        oof = np.eye(3, dtype=np.float32)[ws.train.labels] * 2 + rng.normal(0, 1, (34, 3)).astype(np.float32)
        write_member(
            ws.workdir,
            name,
            oof=oof[:, None],
            test=rng.normal(0, 1, (len(ws.test), 1, 3)).astype(np.float32),
            views=["plain"],
            classes=ws.classes,
            fingerprints=ws.fingerprints(),
            config={"kind": "random"},
            metrics={},
            timings={},
        )
    spec = {"members": ["a", "b"], "blenders": [{"kind": "best_single"}, {"kind": "uniform"}]}
    (tmp_path / "ensembles").mkdir()
    (tmp_path / "ensembles" / "cjk.yaml").write_text(yaml.safe_dump(spec))
    return cfg


def test_blend_report_draws_cjk_class_names_without_missing_glyphs(tmp_path: Path, runner: CliRunner) -> None:
    import warnings

    cfg = cjk_workspace(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # a warning shown once elsewhere in the session must show here too
        r = invoke(runner, ["blend", "ensembles/cjk.yaml", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "Glyph" not in r.output and "missing from font" not in r.output
    png = tmp_path / "work" / "blends" / "cjk" / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_fallback_font_has_every_glyph_and_latin_stays_dejavu(tmp_path: Path) -> None:
    import warnings

    import matplotlib
    from matplotlib import font_manager, ft2font

    from kit.blend.contributions import Contribution
    from kit.blend.report import write_png
    from kit.plots.fonts import cjk_font_path, font_families

    path = cjk_font_path()
    assert path is not None and path.stat().st_size > 1_000_000
    charmap = ft2font.FT2Font(str(path)).get_charmap()
    assert all(ord(ch) in charmap for name in CJK for ch in name)
    dejavu = ft2font.FT2Font(font_manager.findfont("DejaVu Sans")).get_charmap()
    assert not any(ord(ch) in dejavu for name in CJK for ch in name)  # why the fallback is needed
    families = font_families()
    assert families[0] == matplotlib.rcParams["font.family"][0] and families[-1] == "Noto Sans CJK JP"
    before = list(matplotlib.rcParams["font.family"])
    classes = [*CJK, "cat"]
    y = np.repeat(np.arange(4), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" would raise here
        write_png(
            tmp_path / "r.png",
            title="cjk",
            contributions=[
                Contribution(member="a", alone=0.5, weight=0.5, without=0.45, gain=0.05),
                Contribution(member="b", alone=0.4, weight=0.5, without=0.5, gain=0.0),
            ],
            metric="weighted_f1",
            per_class=[{"class": c, "support": 3, "best_single": 0.5, "blend": 0.6} for c in classes],
            single_name="a",
            y=y,
            blend=np.eye(4)[y],
            classes=classes,
        )
    assert (tmp_path / "r.png").stat().st_size > 0
    assert matplotlib.rcParams["font.family"] == before  # only while the PNG is drawn


def test_help_does_not_load_matplotlib_or_the_font() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from kit.cli.app import app\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "print('LOADED', [m for m in sys.modules if m.startswith(('matplotlib', 'kit.plots'))])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED []" in out


# ---------------------------------------------------------------- 14: caches and batches that cannot fit

GB = 1024**3


def test_estimate_and_assess_refuse_with_the_numbers() -> None:
    from kit.train.preflight import Resources, assess, estimate

    e = estimate("big", 2048, 1000, batch_size=32, n_train_rows=800)
    assert e.cache_bytes == 1000 * 2048 * 2048 * 3 and e.batch == 32
    assert e.batch_lean_bytes == 32 * 3 * 2048 * 2048 * 4 * 32
    assert estimate("x", 64, 10, batch_size=32, n_train_rows=17).batch == 17  # a fold has only 17 rows
    res = Resources(
        free_disk=5 * GB, disk_path=Path("/w"), free_memory={"big": 16 * GB}, device={"big": "cpu"}
    )
    problems, warns = assess([e], res, image_side=32)
    disk, mem = problems
    assert (
        "the image caches need 11.7 GB (big: 1000 images at 2048 px" in disk and "/w has 5.0 GB free" in disk
    )
    assert "one training batch of 32 images at 2048 px needs at least 48.0 GB" in mem
    assert "16.0 GB of memory is free; use members.big.batch_size=10" in mem
    assert "img_size is 2048 but the images are at most 32 px (64x upscaled)" in warns[0]
    # the same member at its images' size fits without a word
    small = estimate("big", 32, 1000, batch_size=32, n_train_rows=800)
    assert assess([small], res, image_side=32) == ([], [])
    # fits, but most of the disk and a typical backbone's memory: warnings, not refusals
    mid = estimate("mid", 512, 2000, batch_size=32, n_train_rows=800)
    res = Resources(
        free_disk=2 * GB, disk_path=Path("/w"), free_memory={"mid": 8 * GB}, device={"mid": "cuda"}
    )
    problems, warns = assess([mid], res, image_side=600)
    assert problems == [] and len(warns) == 2
    assert "1.5 GB of the 2.0 GB free" in warns[0] and "more than the 8.0 GB of free GPU memory" in warns[1]


def test_train_at_2048_px_on_32_px_images_is_refused_before_any_cache(tmp_path: Path) -> None:
    """The user path of the report: `kit train` with img_size 2048 on 32 px images, under a memory limit
    (`ulimit -v`, as a container or a shared machine sets one), stops at once with the numbers and the fix."""
    import resource
    import subprocess
    import sys

    data = make_competition(tmp_path / "data", size=32)
    cfg = write_config(
        tmp_path / "kit.yaml", data, {"big": member(img_size=2048, batch_size=32, device="cpu")}
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * GB, 4 * GB))

    r = subprocess.run(
        [sys.executable, "-c", "from kit.cli.app import main; main()", "train", "-c", str(cfg)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        cwd=tmp_path,
        timeout=300,
    )
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 1, out
    assert "not starting: this run cannot fit on this machine" in out
    assert "members.big: one training batch of 17 images at 2048 px needs at least 25.5 GB" in out
    assert "of memory is free; use members.big.batch_size=" in out
    assert "members.big.img_size is 2048 but the images are at most 32 px (64x upscaled)" in out
    assert "Traceback" not in out
    assert not list((tmp_path / "work").glob("cache/images/*.npy"))  # nothing was decoded


def test_a_large_upscale_that_fits_trains_with_a_warning(tmp_path: Path, runner: CliRunner) -> None:
    data = make_competition(tmp_path / "data", size=8)
    cfg = write_config(tmp_path / "kit.yaml", data, {"cnx": member(img_size=48, device="cpu")})
    r = invoke(runner, ["train", "-c", str(cfg)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "warning: members.cnx.img_size is 48 but the images are at most 8 px (6x upscaled)" in out
    assert "the cache takes" in out
    assert (tmp_path / "work" / "members" / "cnx" / "meta.json").is_file()
