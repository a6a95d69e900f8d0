"""`kit init` on real layouts built in tmp_path: Dacon, Kaggle (ids with and without extensions), class folders."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY_INIT_MEMBER, invoke, set_args, write_csv, write_image

from kit.config.load import load_config
from kit.workspace import open_workspace

KOREAN = ["가구수정", "걸레받이수정", "창틀,문틀수정", "오염"]


def make_dacon(root: Path) -> Path:
    rows = []
    for i in range(24):
        rows.append([f"TRAIN_{i:03d}", f"./train/TRAIN_{i:03d}.png", KOREAN[i % 4]])
        write_image(root / "train" / f"TRAIN_{i:03d}.png", seed=i)
    write_csv(root / "train.csv", ["id", "img_path", "label"], rows)
    test = [[f"TEST_{i:03d}", f"./test/TEST_{i:03d}.png"] for i in range(6)]
    for i in range(6):
        write_image(root / "test" / f"TEST_{i:03d}.png", seed=100 + i)
    write_csv(root / "test.csv", ["id", "img_path"], test)
    write_csv(root / "sample_submission.csv", ["id", "label"], [[f"TEST_{i:03d}", "0"] for i in range(6)])
    return root


def make_kaggle(root: Path, with_ext: bool) -> Path:
    ext = ".jpg" if with_ext else ""
    rows = []
    for i in range(30):
        iid = f"{1000 + i:06d}"
        write_image(root / "train_images" / f"{iid}.jpg", seed=i)
        rows.append([iid + ext, str(i % 3), f"p{i // 3}"])
    write_csv(root / "train.csv", ["image_id", "label", "patient_id"], rows)
    for i in range(5):
        write_image(root / "test_images" / f"{9000 + i:06d}.jpg", seed=50 + i)
    write_csv(
        root / "sample_submission.csv",
        ["image_id", "label"],
        [[f"{9000 + i:06d}{ext}", "0"] for i in range(5)],
    )
    return root


def make_class_folders(root: Path) -> Path:
    names = ["Golden Retriever", "Ünïcode Cat", "snake"]
    for c, name in enumerate(names):
        for i in range(7):
            ext = [".JPG", ".jpeg", ".png"][i % 3]
            write_image(root / "train" / name / f"img {i}{ext}", seed=c * 10 + i)
    for i in range(4):
        write_image(root / "test" / f"t{i}.Jpg", seed=200 + i)
    write_csv(root / "sample_submission.csv", ["file", "species"], [[f"t{i}.Jpg", "snake"] for i in range(4)])
    return root


def init_and_load(runner, data: Path, tmp_path: Path, overrides: list[str] | None = None):
    out = tmp_path / "kit.yaml"
    r = invoke(runner, ["init", str(data), "--out", str(out)])
    assert r.exit_code == 0, r.output
    r2 = invoke(runner, ["validate", str(out), *set_args([*TINY_INIT_MEMBER, *(overrides or [])])])
    assert r2.exit_code == 0, r2.output
    assert "not there yet" not in r2.output
    cfg = load_config(out, ["folds.k=2", *(overrides or [])])
    return r.output, cfg, open_workspace(cfg)


def test_dacon_layout(tmp_path: Path, runner) -> None:
    # the sample is 0-filled for named classes: names or indices is the user's call (kit validate asks)
    kind = ["competition.submission.kind=label"]
    out, cfg, ws = init_and_load(runner, make_dacon(tmp_path / "dacon"), tmp_path, kind)
    c = cfg.competition
    assert (c.id_column, c.image_column, c.label_column) == ("id", "img_path", "label")
    assert (
        c.train.name == "train.csv"
        and c.test.name == "test.csv"
        and c.sample_submission.name == "sample_submission.csv"
    )
    assert sorted(ws.classes) == sorted(KOREAN) and "창틀,문틀수정" in ws.classes
    assert len(ws.train) == 24 and ws.test is not None and ws.test.ids == [f"TEST_{i:03d}" for i in range(6)]
    assert "no group column found" in out


def test_kaggle_layout_ids_with_extension(tmp_path: Path, runner) -> None:
    _out, cfg, ws = init_and_load(runner, make_kaggle(tmp_path / "kg", with_ext=True), tmp_path)
    c = cfg.competition
    assert c.id_column == "image_id" and c.label_column == "label" and c.group_column == "patient_id"
    assert c.train_images.name == "train_images" and c.test.name == "test_images"
    assert ws.classes == ["0", "1", "2"]
    assert ws.train.ids[0] == "001000.jpg"  # exact string kept
    assert ws.folds.grouped
    assert ws.test is not None and len(ws.test) == 5


def test_kaggle_layout_ids_without_extension_keep_zero_padding(tmp_path: Path, runner) -> None:
    _, cfg, ws = init_and_load(runner, make_kaggle(tmp_path / "kg", with_ext=False), tmp_path)
    assert cfg.competition.image_column is None and cfg.competition.id_column == "image_id"
    assert ws.train.ids[:2] == ["001000", "001001"]
    assert ws.train.paths[0].name == "001000.jpg"


def test_class_folder_layout_with_unicode_spaces_and_capitals(tmp_path: Path, runner) -> None:
    out, cfg, ws = init_and_load(runner, make_class_folders(tmp_path / "cf"), tmp_path)
    assert cfg.competition.train.name == "train" and cfg.competition.label_column is None
    assert ws.classes == ["Golden Retriever", "snake", "Ünïcode Cat"]
    assert len(ws.train) == 21 and ws.test is not None and len(ws.test) == 4
    assert "class-folder layout" in out


def test_init_never_overwrites_without_force(tmp_path: Path, runner) -> None:
    data = make_dacon(tmp_path / "dacon")
    out = tmp_path / "kit.yaml"
    out.write_text("# mine\n")
    r = invoke(runner, ["init", str(data), "--out", str(out)])
    assert r.exit_code == 1 and "already exists; pass --force" in r.output
    assert out.read_text() == "# mine\n"
    r = invoke(runner, ["init", str(data), "--out", str(out), "--force"])
    assert r.exit_code == 0 and "competition:" in out.read_text()


def test_init_reports_what_it_could_not_find(tmp_path: Path, runner) -> None:
    (tmp_path / "empty").mkdir()
    r = invoke(runner, ["init", str(tmp_path / "empty"), "--out", str(tmp_path / "k.yaml")])
    assert r.exit_code == 0
    assert "not found" in r.output and "no sample_submission CSV found" in r.output
    assert "no train table" in r.output


def test_shipped_ensemble_template_is_the_repository_one() -> None:
    from kit.data.layout import default_ensemble_text

    repo = Path(__file__).resolve().parents[1]
    assert default_ensemble_text() == (repo / "ensembles" / "all.yaml").read_text("utf-8")


def test_commented_members_validate_when_uncommented(tmp_path: Path, runner) -> None:
    data = make_dacon(tmp_path / "dacon")
    out = tmp_path / "kit.yaml"
    assert invoke(runner, ["init", str(data), "--out", str(out)]).exit_code == 0
    text = out.read_text("utf-8")
    uncommented = text.replace("  # more members for the blend", "  #~").replace("\n  # ", "\n  ")
    out.write_text(uncommented.replace("\n  #~", "\n  # ~"), "utf-8")
    cfg = load_config(out)
    assert list(cfg.members) == ["convnext", "swin", "effnet", "clip"]
    assert cfg.members["clip"].kind == "clip_probe" and cfg.members["effnet"].model == "efficientnet_b0"


def test_new_user_path_init_train_blend_submit(tmp_path: Path, runner) -> None:
    """What a newcomer types on an unseen competition (class folders, a `file,species` sample), via the CLI."""
    data = make_class_folders(tmp_path / "plants")
    r = invoke(runner, ["init", str(data)], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ensembles" / "all.yaml").is_file() and "kit blend ensembles/all.yaml" in r.output
    sets = set_args(TINY_INIT_MEMBER)
    assert invoke(runner, ["validate", *sets], cwd=tmp_path).exit_code == 0
    for cmd in (
        ["train"],
        ["blend", "ensembles/all.yaml"],
        ["submit", "ensembles/all.yaml", "-o", "sub.csv"],
    ):
        r = invoke(runner, [*cmd, *sets], cwd=tmp_path)
        assert r.exit_code == 0, r.output
    lines = (tmp_path / "sub.csv").read_text("utf-8").splitlines()
    assert lines[0] == "file,species" and [ln.split(",")[0] for ln in lines[1:]] == [
        f"t{i}.Jpg" for i in range(4)
    ]
    assert {ln.split(",", 1)[1] for ln in lines[1:]} <= {"Golden Retriever", "Ünïcode Cat", "snake"}
    r = invoke(runner, ["check-submission", "sub.csv", *sets], cwd=tmp_path)
    assert r.exit_code == 0, r.output
