"""Never lose a user's files (issue 12, items 1-4 and 13): every path a command writes or deletes (--out,
--force, a name from a file or an option) stays inside what kit wrote. Each test goes through the real CLI."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke, write_csv
from test_submit_cli import write_blend, write_config

from kit.artifacts.member import write_member
from kit.config.load import load_config
from kit.errors import KitError
from kit.workspace import Workspace, open_workspace


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes), to prove nothing was changed, added or removed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def user_folder(path: Path) -> dict[str, bytes]:
    """A folder of the user's own files (kit wrote none of them)."""
    files = {
        "notes.txt": b"my notes\n",
        "train.csv": b"id,label\na,cat\n",
        "photos/cat.png": b"\x89PNG not really\n",
    }
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return snapshot(path)


def clean_error(r) -> str:
    """The run failed with kit's own message: exit 1 and no traceback."""
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output, r.output
    return " ".join(r.output.split())


# ---------------------------------------------------------------- 1. kit demo --out on an existing folder


@pytest.mark.parametrize("force", [False, True])
def test_demo_refuses_a_folder_it_did_not_build(tmp_path: Path, runner, force: bool) -> None:
    target = tmp_path / "mine"
    before = user_folder(target)
    args = ["demo", "--data-only", "--out", str(target)] + (["--force"] if force else [])
    out = clean_error(invoke(runner, args))
    assert "is not empty and was not built by `kit demo`" in out and ".kit-demo.json" in out
    assert snapshot(target) == before  # nothing deleted, nothing added


def test_demo_out_dot_in_a_user_folder_is_refused_without_traceback(tmp_path: Path, runner) -> None:
    before = user_folder(tmp_path)
    for extra in ([], ["--force"]):
        out = clean_error(invoke(runner, ["demo", "--data-only", "--out", ".", *extra], cwd=tmp_path))
        assert "--out . is not empty" in out
    assert snapshot(tmp_path) == before


def test_demo_out_dot_in_an_empty_folder_builds_there(tmp_path: Path, runner) -> None:
    r = invoke(runner, ["demo", "--data-only", "--out", "."], cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / ".kit-demo.json").is_file() and (tmp_path / "data" / "train.csv").is_file()


def test_demo_force_rebuilds_only_what_kit_wrote_in_its_folder(tmp_path: Path, runner) -> None:
    demo = tmp_path / "demo"
    assert invoke(runner, ["demo", "--data-only", "--out", str(demo)]).exit_code == 0
    marker = json.loads((demo / ".kit-demo.json").read_text("utf-8"))
    assert marker["written_by"] == "kit demo"
    assert (demo / "data" / ".kit-demo.json").is_file()  # the competition folder carries the marker too
    train = (demo / "data" / "train.csv").read_bytes()
    (demo / "my_notes.txt").write_text("kept\n")
    (demo / "data" / "train.csv").write_text("id,label\nbroken,x\n")
    (demo / "kit.yaml").write_text("# edited\n")

    r = invoke(runner, ["demo", "--data-only", "--out", str(demo)])  # no --force: a demo folder is reused
    assert r.exit_code == 0, r.output
    assert (demo / "kit.yaml").read_text() == "# edited\n"

    r = invoke(runner, ["demo", "--data-only", "--out", str(demo), "--force"])
    assert r.exit_code == 0, r.output
    assert (demo / "data" / "train.csv").read_bytes() == train  # rebuilt, same seeded data
    assert (demo / "kit.yaml").read_text("utf-8").startswith("# kit.yaml of the embedded demo")
    assert (demo / "my_notes.txt").read_text() == "kept\n"  # a file kit did not write survives --force
    assert not [p.name for p in demo.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_demo_refuses_an_unmarked_data_folder_inside_its_folder(tmp_path: Path, runner) -> None:
    """The marker is checked per folder: a user's data/ inside a marked demo folder is not kit's either."""
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / ".kit-demo.json").write_text("{}")
    before = user_folder(demo / "data")
    out = clean_error(invoke(runner, ["demo", "--data-only", "--out", str(demo), "--force"]))
    assert "was not built by `kit demo`" in out
    assert snapshot(demo / "data") == before


# ---------------------------------------------------------------- 2. kit demo inside a user's project


def user_project(home: Path) -> dict[str, bytes]:
    files = {
        "kit.yaml": b"# the user's config\ncompetition: {root: comp, train: train.csv}\nworkdir: work\n",
        "work/folds.csv": b"id,fold\nu1,0\n",
        "work/members/tiny/meta.json": b'{"user": true}\n',
        "work/blends/all/winner.json": b'{"user": true}\n',
        "submissions/mine.csv": b"id,label\nu1,cat\n",
    }
    for name, data in files.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_bytes(data)
    return snapshot(home)


TINY_MEMBERS = (
    "members={tiny: {kind: timm, model: test_convnext, pretrained: false, img_size: 32, epochs: 1, "
    "batch_size: 64, tta: [plain]}}"
)


def test_demo_inside_a_user_project_works_in_its_own_folder(tmp_path: Path, runner) -> None:
    """The whole loop (one tiny member, 2 folds) from a project with its own kit.yaml, work/ and submissions/."""
    before = user_project(tmp_path)
    args = ["demo", "--out", "demo", "--set", TINY_MEMBERS, "--set", "folds.k=2"]
    args += ["--set", "spec.blenders=[{kind: uniform}]"]  # the blend step is not what this test is about
    r = invoke(runner, args, cwd=tmp_path)
    assert r.exit_code == 0, r.output
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before  # the project's kit.yaml, work/, submissions/ untouched
    assert sorted(k for k in after if not k.startswith("demo/")) == sorted(before)  # nothing added outside
    demo = tmp_path / "demo"
    assert (demo / "work" / "members" / "tiny" / "meta.json").is_file()
    assert json.loads((demo / "work" / "blends" / "all" / "winner.json").read_text())["members"] == ["tiny"]
    subs = list((demo / "submissions").glob("all-*.csv"))
    assert len(subs) == 1 and (demo / "submissions" / (subs[0].name + ".json")).is_file()
    assert "held-back test answers" in " ".join(r.output.split())


def test_demo_refuses_a_workdir_outside_its_folder(tmp_path: Path, runner) -> None:
    before = user_project(tmp_path)
    r = invoke(runner, ["demo", "--out", "demo", "--set", "workdir=../work"], cwd=tmp_path)
    out = clean_error(r)
    assert "outside its folder" in out and "drop --set workdir" in out
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before
    assert not (tmp_path / "demo" / "work").exists()


def test_repository_kit_yaml_has_the_demo_template_settings() -> None:
    """The repo's kit.yaml is the demo's config seen from the repo root: same settings, paths into data/demo."""
    import yaml

    from kit.demo.run import demo_config_text

    repo = yaml.safe_load((Path(__file__).resolve().parents[1] / "kit.yaml").read_text("utf-8"))
    template = yaml.safe_load(demo_config_text())
    assert repo["competition"].pop("root") == "data/demo/data" and repo.pop("workdir") == "data/demo/work"
    assert repo["members"]["clip"].pop("model") == "local-dir:data/demo/work/clip-tiny"
    assert template["competition"].pop("root") == "data" and template.pop("workdir") == "work"
    assert template["members"]["clip"].pop("model") == "local-dir:work/clip-tiny"
    assert repo == template


# ---------------------------------------------------------------- 3 and 13. kit submit --out, --member


@dataclass
class Project:
    home: Path
    config: Path
    ws: Workspace


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Project:
    """The shared demo competition (read-only here), a kit.yaml, one member 'm' and one blend 'all'."""
    home = tmp_path_factory.mktemp("reliability")
    config = write_config(home / "kit.yaml", demo_dir, home / "work")
    ws = open_workspace(load_config(config))
    assert ws.test is not None
    rng = np.random.default_rng(0)
    e = ws.expected()
    write_member(
        ws.workdir,
        "m",
        oof=rng.normal(size=(len(ws.train), 1, len(ws.classes))),
        test=rng.normal(size=(len(ws.test), 1, len(ws.classes))),
        views=["plain"],
        classes=ws.classes,
        fingerprints=ws.fingerprints(),
        config={"kind": "timm"},
        metrics={"metric": "weighted_f1", "pooled": {"weighted_f1": 0.5}},
        timings={},
    )
    probs = rng.dirichlet(np.ones(len(ws.classes)), size=len(ws.test))
    write_blend(ws.workdir, "all", probs, e, len(ws.train), nested=0.6)
    return Project(home, config, ws)


def submit(runner, project: Project, *args: str):
    return invoke(runner, ["submit", *args, "-c", str(project.config)], cwd=project.home)


def test_submit_never_writes_over_competition_files_or_artifacts(runner, project: Project) -> None:
    comp, workdir = project.ws.cfg.competition, project.ws.workdir
    assert comp.sample_submission is not None and comp.test is not None
    targets = {
        comp.train: "competition's train",
        comp.test: "competition's test",
        comp.sample_submission: "competition's sample submission",
        workdir / "folds.csv": "inside the workdir",
        workdir / "members" / "m" / "meta.json": "inside the workdir",
        workdir / "blends" / "all" / "new.csv": "inside the workdir",
    }
    data_before, work_before = snapshot(comp.root), snapshot(workdir)
    for target, why in targets.items():
        for force in ([], ["--force"]):
            out = clean_error(submit(runner, project, "--member", "m", "--out", str(target), *force))
            assert "refusing to write" in out and why in out, out
    # a relative path into the data and an image: refused as files kit did not write
    image = comp.root / "train" / "TRAIN_0000.png"
    for target in (os.path.relpath(comp.train, project.home), str(image)):
        out = clean_error(submit(runner, project, "ensembles/all.yaml", "--out", target, "--force"))
        assert "refusing to write" in out
    assert snapshot(comp.root) == data_before and snapshot(workdir) == work_before


def test_submit_replaces_only_its_own_submission_and_only_with_force(runner, project: Project) -> None:
    out = project.home / "subs" / "final.csv"
    r = submit(runner, project, "--member", "m", "--out", str(out))
    assert r.exit_code == 0, r.output
    first = out.read_bytes()
    msg = clean_error(submit(runner, project, "ensembles/all.yaml", "--out", str(out)))
    assert "exists; pass --force" in msg and out.read_bytes() == first
    r = submit(runner, project, "ensembles/all.yaml", "--out", str(out), "--force")
    assert r.exit_code == 0, r.output
    side = json.loads((out.parent / "final.csv.json").read_text("utf-8"))
    assert side["source"]["kind"] == "blend" and out.read_bytes() != first

    foreign = project.home / "subs" / "notes.csv"
    foreign.write_text("my own table\n")
    msg = clean_error(submit(runner, project, "--member", "m", "--out", str(foreign), "--force"))
    assert "was not written by `kit submit`" in msg and foreign.read_text() == "my own table\n"
    assert not (project.home / "subs" / "notes.csv.json").exists()

    msg = clean_error(submit(runner, project, "--member", "m", "--out", str(project.home / "subs")))
    assert "is a folder" in msg


@pytest.mark.parametrize("name", ["../members/m", "m/../m", "..", ".", "/tmp/m", "-m"])
def test_submit_member_names_are_names_not_paths(runner, project: Project, name: str) -> None:
    before = snapshot(project.home)
    msg = clean_error(submit(runner, project, f"--member={name}"))
    assert f"member name {name!r} is not a plain name" in msg
    assert snapshot(project.home) == before  # nothing written anywhere (not even submissions/)


def test_submit_blend_names_are_names_not_paths(runner, project: Project) -> None:
    before = snapshot(project.home)
    for name in ("../blends/all", "ensembles/..yaml"):
        msg = clean_error(submit(runner, project, name))
        assert "blend name" in msg and "is not a plain name" in msg
    assert snapshot(project.home) == before


# ---------------------------------------------------------------- 4. ensembles/..yaml and atomic_dir


def test_blend_spec_named_dot_dot_yaml_is_refused_and_blends_survive(runner, project: Project) -> None:
    """`ensembles/..yaml` would name the blend '.', i.e. workdir/blends itself (replaced whole before)."""
    from kit.blend.run import run_blend
    from kit.config.load import load_config

    blends = project.ws.workdir / "blends"
    before = snapshot(blends)
    assert "all/winner.json" in before
    spec = project.home / "ensembles" / "..yaml"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text("members: all\nblenders: [{kind: uniform}]\n")
    msg = clean_error(invoke(runner, ["blend", str(spec), "-c", str(project.config)], cwd=project.home))
    assert "blend name '.' is not a plain name" in msg and "ensembles/NAME.yaml" in msg
    with pytest.raises(KitError, match="blend name '.' is not a plain name"):
        run_blend(
            load_config(project.config), spec
        )  # the library path (`kit demo` calls it): blend_dir refuses too
    assert snapshot(blends) == before


def test_blend_dir_and_atomic_dir_refuse_anything_but_a_folder_strictly_inside(tmp_path: Path) -> None:
    from kit.artifacts.atomic import atomic_dir
    from kit.artifacts.blend import blend_dir, blends_dir
    from kit.artifacts.member import member_dir

    blends = blends_dir(tmp_path)
    (blends / "all").mkdir(parents=True)
    (blends / "all" / "winner.json").write_text("{}")
    for bad in (".", "..", "", "a/b", ".hidden", "x" * 101):
        with pytest.raises(KitError, match="not a plain name"):
            blend_dir(tmp_path, bad)
        with pytest.raises(KitError, match="not a plain name"):
            member_dir(tmp_path, bad)
    assert blend_dir(tmp_path, "최종_v2.1") == blends / "최종_v2.1"  # unicode letters are names too
    for path, parent in (
        (blends / ".", blends),
        (blends / "..", blends),
        (Path("."), Path(".")),
        (blends, blends),
    ):
        with pytest.raises(KitError, match="not a folder strictly inside"), atomic_dir(path, parent=parent):
            pass
    with atomic_dir(blends / "all", parent=blends) as tmp:
        (tmp / "winner.json").write_text('{"new": 1}')
    assert sorted(p.name for p in blends.iterdir()) == ["all"]
    assert (blends / "all" / "winner.json").read_text() == '{"new": 1}'


# ---------------------------------------------------------------- the other writing commands


def test_init_force_replaces_only_a_kit_config(tmp_path: Path, runner) -> None:
    data = tmp_path / "comp"
    write_csv(data / "train.csv", ["id", "label"], [["a", "cat"], ["b", "dog"]])
    table = (data / "train.csv").read_bytes()
    msg = clean_error(invoke(runner, ["init", str(data), "--out", str(data / "train.csv"), "--force"]))
    assert "a kit config is a .yaml file" in msg and (data / "train.csv").read_bytes() == table

    other = tmp_path / "compose.yaml"
    other.write_text("services: {web: {image: nginx}}\n")
    msg = clean_error(invoke(runner, ["init", str(data), "--out", str(other), "--force"]))
    assert "it is not a kit config" in msg and other.read_text() == "services: {web: {image: nginx}}\n"

    cfg = tmp_path / "kit.yaml"
    assert invoke(runner, ["init", str(data), "--out", str(cfg)]).exit_code == 0
    cfg.write_text(cfg.read_text("utf-8") + "# my edit\n", "utf-8")
    assert "already exists" in clean_error(invoke(runner, ["init", str(data), "--out", str(cfg)]))
    r = invoke(runner, ["init", str(data), "--out", str(cfg), "--force"])
    assert r.exit_code == 0, r.output
    assert "# my edit" not in cfg.read_text("utf-8")


def test_folds_refuses_a_workdir_that_holds_the_competition(tmp_path: Path, runner) -> None:
    """`workdir` = the data folder would let `kit folds` write over a competition's own folds.csv."""
    data = tmp_path / "comp"
    write_csv(
        data / "train.csv", ["id", "img_path", "label"], [[f"{i}", f"{i}.png", "ab"[i % 2]] for i in range(8)]
    )
    write_csv(data / "folds.csv", ["id", "fold"], [["0", "shipped by the competition"]])
    before = snapshot(data)
    for workdir in (data, tmp_path):
        config = tmp_path / "kit.yaml"
        config.write_text(
            f"competition: {{root: {data}, train: train.csv, id_column: id, image_column: img_path, "
            f"label_column: label}}\nworkdir: {workdir}\n"
        )
        msg = clean_error(invoke(runner, ["folds", "-c", str(config)]))
        assert "holds the competition's files" in msg and "workdir: work" in msg
        r = invoke(runner, ["validate", str(config)])
        assert r.exit_code == 1 and "holds the competition's files" in " ".join(r.output.split())
    assert snapshot(data) == before
