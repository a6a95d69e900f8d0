"""Near-duplicate images (kit.data.duplicates) and groups files (kit.data.groups, `kit init`): real image files
cut from photographs, the real CLI."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_INIT_MEMBER, invoke, set_args, write_csv

from kit.config.load import load_config
from kit.data.duplicates import ImageHasher, hash_pairs, image_hashes, near_duplicates
from kit.workspace import open_workspace


def photo_tiles() -> list:
    """Textured 160 x 142 px tiles of scikit-learn's two sample photographs, distinct images (flat sky tiles,
    whose perceptual hash is unstable, left out)."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    tiles = []
    for name in ("china.jpg", "flower.jpg"):
        arr = load_sample_image(name)
        for r in range(3):
            for c in range(4):
                tile = arr[r * 142 : (r + 1) * 142, c * 160 : (c + 1) * 160]
                if tile.mean(axis=2).std() > 25:
                    tiles.append(Image.fromarray(tile))
    return tiles


def copies(tiles: list) -> dict[int, object]:
    """Near-duplicates of four tiles: resized, recompressed, brightened, enlarged and recompressed."""
    import io

    from PIL import Image, ImageEnhance

    def jpeg(im, q: int):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        buf.seek(0)
        return Image.open(buf).convert("RGB")

    return {
        0: tiles[0].resize((80, 71)),
        1: jpeg(tiles[1], 30),
        2: ImageEnhance.Brightness(tiles[2]).enhance(1.15),
        3: jpeg(tiles[3].resize((320, 284)), 60),
    }


def save_all(folder: Path, images: list, stem: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        p = folder / f"{stem}{i:02d}{'.png' if i % 2 else '.jpg'}"
        im.save(p)
        paths.append(p)
    return paths


def test_the_batched_hash_is_imagehashs_phash(tmp_path: Path) -> None:
    """One DCT over every image at once gives imagehash.phash's bits, on PNGs (full decode) and on JPEGs
    (both decoded at the same reduced scale)."""
    import imagehash
    from PIL import Image

    from kit.data.cache import to_rgb
    from kit.data.duplicates import DRAFT

    tiles = photo_tiles()
    paths = save_all(tmp_path / "t", [*tiles, *copies(tiles).values()])
    ours = ImageHasher(None, workers=2).hashes(paths)
    for p, h in zip(paths, ours, strict=True):
        with Image.open(p) as im:
            if im.format == "JPEG":
                im.draft("L", (DRAFT, DRAFT))
            bits = imagehash.phash(to_rgb(im)).hash.reshape(-1)
        assert int(h) == int("".join("1" if b else "0" for b in bits), 2), p.name
    assert len(set(ours[: len(tiles)].tolist())) == len(tiles)  # distinct tiles, distinct hashes


def test_copies_are_found_and_distinct_images_are_not(tmp_path: Path) -> None:
    tiles = photo_tiles()
    assert len(tiles) >= 12
    planted = copies(tiles)
    train = save_all(tmp_path / "train", [*tiles, *planted.values()])
    h = image_hashes(train)
    assert h.dtype == np.uint64 and h.shape == (len(train),)
    found = near_duplicates(h)
    n = len(tiles)
    assert sorted(found.train_clusters) == [[k, n + j] for j, k in enumerate(planted)]
    assert found.n_clustered == 2 * len(planted)
    groups = found.cluster_of(len(train))
    assert len(np.unique(groups)) == len(train) - len(planted)
    assert all(groups[k] == groups[n + j] for j, k in enumerate(planted))
    # the same copies as a test set: each pairs with its original, and only with it
    test = save_all(tmp_path / "test", list(planted.values()), stem="t")
    split = near_duplicates(image_hashes(train[:n]), image_hashes(test))
    assert split.train_clusters == []
    assert [(r, t) for r, t, _ in sorted(split.train_test)] == [(k, j) for j, k in enumerate(planted)]
    assert all(0 <= d <= split.max_distance for _, _, d in split.train_test)


def brute_pairs(a: np.ndarray, b: np.ndarray | None, d: int) -> set[tuple[int, int, int]]:
    other = a if b is None else b
    dist = np.bitwise_count(a[:, None] ^ other[None, :]).astype(np.int64)
    close = dist <= d
    if b is None:
        close = np.triu(close, 1)
    i, j = np.nonzero(close)
    return set(zip(i.tolist(), j.tolist(), dist[i, j].tolist(), strict=True))


def planted_hashes(rng: np.random.Generator, n: int, copies: int, max_flips: int) -> np.ndarray:
    base = rng.integers(0, np.iinfo(np.uint64).max, n, dtype=np.uint64, endpoint=True)
    src = rng.integers(0, n, copies)
    flipped = base[src].copy()
    for k in range(copies):
        for bit in rng.choice(64, int(rng.integers(0, max_flips + 1)), replace=False):
            flipped[k] ^= np.uint64(1) << np.uint64(bit)
    return np.concatenate([base, flipped, base[:3]])  # exact copies too


@pytest.mark.parametrize("d", [0, 3, 4, 6, 7, 8, 12])
def test_banding_search_equals_brute_force(d: int) -> None:
    rng = np.random.default_rng(d)
    a = planted_hashes(rng, 1500, 400, 14)
    i, j, dist = hash_pairs(a, None, d)
    got = set(zip(i.tolist(), j.tolist(), dist.tolist(), strict=True))
    assert got == brute_pairs(a, None, d) and len(got) > 3
    b = np.concatenate([a[rng.integers(0, len(a), 300)] ^ np.uint64(0b1011), planted_hashes(rng, 500, 0, 0)])
    i, j, dist = hash_pairs(a, b, d)
    assert set(zip(i.tolist(), j.tolist(), dist.tolist(), strict=True)) == brute_pairs(a, b, d)
    # the clusters are the connected components of the brute-force graph
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = brute_pairs(a, None, d)
    rows, cols = [p[0] for p in pairs], [p[1] for p in pairs]
    _, label = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(a),) * 2))
    expected = sorted(sorted(np.flatnonzero(label == c).tolist()) for c in np.unique(label))
    found = near_duplicates(a, max_distance=d)
    assert sorted(found.train_clusters) == [c for c in expected if len(c) >= 2]
    sizes = [len(c) for c in found.train_clusters]
    assert sizes == sorted(sizes, reverse=True)


def test_the_cache_makes_a_second_run_read_no_image(tmp_path: Path) -> None:
    paths = save_all(tmp_path / "imgs", photo_tiles())
    cache = tmp_path / "cache"
    first = ImageHasher(cache)
    h1 = first.hashes(paths)
    assert first.decoded == len(paths) and first.files.hashed == len(paths)
    second = ImageHasher(cache)
    h2 = second.hashes(paths)
    assert second.decoded == 0 and second.files.hashed == 0  # only stat calls: no image file opened
    assert np.array_equal(h1, h2)
    # keyed by content: a renamed copy decodes nothing, a changed image is decoded again
    shutil.copy(paths[0], tmp_path / "imgs" / "copy.jpg")
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(paths[1])
    third = ImageHasher(cache)
    h3 = third.hashes([*paths, tmp_path / "imgs" / "copy.jpg"])
    assert third.decoded == 1 and third.files.hashed == 2
    assert h3[-1] == h1[0] and h3[1] != h1[1] and np.array_equal(h3[2:-1], h1[2:])


def test_unreadable_images_are_named(tmp_path: Path) -> None:
    from kit.errors import KitError

    paths = save_all(tmp_path / "imgs", photo_tiles()[:2])
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(KitError, match=r"2 image\(s\) could not be hashed") as e:
        image_hashes(
            [*paths, tmp_path / "imgs" / "broken.jpg", tmp_path / "gone.png"], cache_dir=tmp_path / "c"
        )
    assert any("broken.jpg: unreadable" in p for p in e.value.problems)
    assert any("gone.png: missing" in p for p in e.value.problems)


def make_competition(root: Path) -> dict[int, int]:
    """Class folders of photo tiles (china / flower) with four planted copies (zcopyK.jpg of tileK); returns
    the planted copies by tile."""
    tiles = photo_tiles()
    planted = copies(tiles)
    for i, t in enumerate(tiles):
        cls = "china" if i < len(tiles) // 2 else "flower"
        (root / "train" / cls).mkdir(parents=True, exist_ok=True)
        t.save(root / "train" / cls / f"tile{i:02d}.png")
    for k, im in planted.items():
        cls = "china" if k < len(tiles) // 2 else "flower"
        im.save(root / "train" / cls / f"zcopy{k}.jpg")
    (root / "test").mkdir()
    tiles[-1].rotate(90).save(root / "test" / "t0.png")
    tiles[-2].rotate(90).save(root / "test" / "t1.png")
    write_csv(root / "sample_submission.csv", ["file", "label"], [["t0.png", "china"], ["t1.png", "china"]])
    return planted


def test_kit_init_proposes_duplicate_clusters_as_groups_and_folds_keep_them(tmp_path: Path, runner) -> None:
    planted = make_competition(tmp_path / "data")
    out = tmp_path / "kit.yaml"
    r = invoke(runner, ["init", str(tmp_path / "data"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "4 clusters of near-duplicate images (8 images" in r.output and "proposed as groups" in r.output
    assert "groups_file: kit.groups.csv" in out.read_text("utf-8")
    text = (tmp_path / "kit.groups.csv").read_text("utf-8").splitlines()
    assert text[0].startswith("# written by `kit init`") and text[1] == "id,group"
    rows = list(csv.reader(text[2:]))
    assert len(rows) == 8 and len({g for _, g in rows}) == 4
    assert all(any(i.endswith(f"zcopy{k}.jpg") for i, _ in rows) for k in planted)
    # the hashes were cached in the workdir init claimed
    assert (tmp_path / "work" / "cache").is_dir()
    r = invoke(runner, ["validate", str(out), *set_args(TINY_INIT_MEMBER)])
    assert r.exit_code == 0, r.output
    r = invoke(runner, ["folds", "-c", str(out), "--set", "folds.k=2"])
    assert r.exit_code == 0, r.output
    assert "grouped by competition.groups_file (kit.groups.csv)" in r.output
    fold_of = dict(csv.reader((tmp_path / "work" / "folds.csv").read_text("utf-8").splitlines()[1:]))
    by_group: dict[str, set[str]] = {}
    for rid, g in rows:
        by_group.setdefault(g, set()).add(fold_of[rid])
    assert all(len(f) == 1 for f in by_group.values()), by_group
    # the groups enter the data fingerprint, as a group column's do
    cfg = load_config(out, ["folds.k=2"])
    ws = open_workspace(cfg, write=False)
    plain = open_workspace(load_config(out, ["folds.k=2", "competition.groups_file=null"]), write=False)
    assert ws.folds.grouped and not plain.folds.grouped
    assert ws.data_fingerprint != plain.data_fingerprint
    assert ws.train_images_fingerprint == plain.train_images_fingerprint


def test_kit_init_no_duplicates_and_foreign_groups_file(tmp_path: Path, runner) -> None:
    make_competition(tmp_path / "data")
    out = tmp_path / "kit.yaml"
    r = invoke(runner, ["init", str(tmp_path / "data"), "--out", str(out), "--no-duplicates"])
    assert r.exit_code == 0, r.output
    assert load_config(out).competition.groups_file is None and not (tmp_path / "kit.groups.csv").exists()
    assert "near-duplicate" not in r.output
    mine = tmp_path / "kit.groups.csv"
    mine.write_text("id,group\nchina/tile00.png,a\n", "utf-8")
    r = invoke(runner, ["init", str(tmp_path / "data"), "--out", str(out), "--force"])
    assert r.exit_code == 0, r.output
    assert "kit did not write it" in r.output and load_config(out).competition.groups_file is None
    assert mine.read_text("utf-8") == "id,group\nchina/tile00.png,a\n"


def kit_yaml_with_groups(tmp_path: Path, groups: str, extra: str = "") -> Path:
    data = tmp_path / "data"
    if not data.exists():
        make_competition(data)
    (tmp_path / "groups.csv").write_text(groups, "utf-8")
    out = tmp_path / "kit.yaml"
    out.write_text(
        f"competition:\n  root: data\n  train: train\n  test: test\n  sample_submission: sample_submission.csv\n"
        f"  groups_file: groups.csv\n{extra}folds:\n  k: 2\nmembers: {{}}\n",
        "utf-8",
    )
    return out


@pytest.mark.parametrize(
    ("groups", "extra", "message"),
    [
        (
            "id,grp\nchina/tile00.png,a\n",
            "",
            "groups.csv line 1: the header is ['id', 'grp']; the file needs",
        ),
        ("id,group\nchina/nope.png,a\n", "", "line 2: id 'china/nope.png' is not a train id"),
        (
            "# mine\nid,group\nchina/tile00.png,a\nchina/tile01.png,b\nchina/tile00.png,c\n",
            "",
            "line 5: id 'china/tile00.png' is listed again (line 3)",
        ),
        (
            "id,group\n",
            "  group_column: g\n",
            "set competition.group_column (a column of the train table) or",
        ),
    ],
)
def test_bad_groups_files_are_reported_by_validate(
    tmp_path: Path, runner, groups: str, extra: str, message: str
) -> None:
    out = kit_yaml_with_groups(tmp_path, groups, extra)
    r = invoke(runner, ["validate", str(out)])
    assert r.exit_code == 1
    assert message in r.output.replace("\n    ", " ").replace("\n", " ") or message in r.output, r.output


def test_missing_groups_file_and_unlisted_rows(tmp_path: Path, runner) -> None:
    from kit.errors import KitError

    out = kit_yaml_with_groups(
        tmp_path, "id,group\nchina/tile00.png,a\nchina/tile01.png,a\nchina/tile02.png,\n"
    )
    ws = open_workspace(load_config(out), write=False)
    groups = ws.train.groups
    assert groups is not None and len(groups) == len(ws.train)
    at = {rid: g for rid, g in zip(ws.train.ids, groups, strict=True)}
    assert at["china/tile00.png"] == at["china/tile01.png"] == "a"
    assert len(set(groups)) == len(groups) - 1  # every other row (the blank cell's too) is its own group
    (tmp_path / "groups.csv").unlink()
    with pytest.raises(KitError, match=r"competition.groups_file: .*groups.csv not found"):
        open_workspace(load_config(out), write=False)
    r = invoke(runner, ["validate", str(out)])
    assert r.exit_code == 1 and "not found" in r.output
