"""`kit predict` and `kit export`: a trained ensemble on new images, from the workspace or an exported bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kit.cli.common import AllowStaleOpt, ConfigOpt, SetOpt, console, err_console, kit_command, load
from kit.errors import KitError

MemberOpt = Annotated[
    str | None, typer.Option("--member", "-m", help="one trained member instead of a blend")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cuda or cpu")]


def _predictor(
    ensemble: Path | None,
    member: str | None,
    bundle: Path | None,
    config: Path,
    overrides: list[str] | None,
    allow_stale: bool,
    **kwargs: Any,
) -> tuple[Any, Any]:
    from kit.predict.predictor import Predictor

    if bundle is not None:
        if ensemble is not None or member is not None:
            raise KitError("--bundle predicts with what the bundle holds; drop the ensemble spec / --member")
        return Predictor.load(bundle, **kwargs), None
    if (ensemble is None) == (member is None):
        raise KitError(
            "name what to predict with: `kit predict ensembles/NAME.yaml`, `--member NAME` or `--bundle DIR`"
        )
    cfg = load(config, overrides)
    return Predictor.from_workspace(cfg, ensemble, member=member, allow_stale=allow_stale, **kwargs), cfg


@kit_command
def predict(
    ensemble: Annotated[
        Path | None, typer.Argument(help="ensemble spec whose `kit blend` winner to run")
    ] = None,
    images: Annotated[
        Path, typer.Option("--images", "-i", help="a folder of images or a CSV table of them")
    ] = Path("test"),
    member: MemberOpt = None,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="a folder `kit export` wrote")] = None,
    sample: Annotated[
        Path | None, typer.Option("--sample", help="sample_submission.csv to shape the CSV")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="CSV to write (default submissions/)")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader workers that decode images")] = 0,
    device: DeviceOpt = "auto",
    force: Annotated[bool, typer.Option("--force", help="replace a CSV kit wrote")] = False,
    config: ConfigOpt = Path("kit.yaml"),
    overrides: SetOpt = None,
    allow_stale: AllowStaleOpt = False,
) -> None:
    """Run every fold model of a blend's members (or one member) over new images; write a validated CSV.

    Example: `kit predict ensembles/all.yaml --images data/test2 --sample data/sample_submission.csv --out sub.csv`
    or `kit predict --bundle bundle/ --images /kaggle/input/comp/test --sample sample_submission.csv --out sub.csv`
    """
    from kit.cli.progress import RichReporter
    from kit.predict.run import predict_files

    p, cfg = _predictor(
        ensemble,
        member,
        bundle,
        config,
        overrides,
        allow_stale,
        device=device,
        workers=workers,
        reporter=RichReporter(console),
    )
    res = predict_files(p, images, sample=sample, out=out, force=force, cfg=cfg)
    t = p.timings
    console.print(f"[green]wrote[/] {res.path} ({res.n_rows} rows, {res.kind})", highlight=False)
    if res.npy is not None:
        console.print(
            f"[green]wrote[/] {res.npy} (probabilities [{t.images}, {len(p.classes)}])", highlight=False
        )
    per = ", ".join(f"{m} {s:.1f} s" for m, s in t.members_s.items())
    console.print(
        f"  {t.images} images in {t.total_s:.1f} s ({t.images_per_s:.1f} images/s): decode {t.decode_s:.1f} s, {per}",
        highlight=False,
    )
    for w in res.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)


@kit_command
def export(
    ensemble: Annotated[
        Path | None, typer.Argument(help="ensemble spec whose `kit blend` winner to export")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="the bundle folder to create")] = Path("bundle"),
    member: MemberOpt = None,
    half: Annotated[bool, typer.Option("--half", help="store weights as float16 (half the size)")] = False,
    wheels: Annotated[
        bool,
        typer.Option(
            "--wheels",
            help="also put wheels of kit and its dependencies (not torch/torchvision) in DIR/wheels, for "
            "`pip install --no-index --find-links DIR/wheels kit` offline (downloads them with pip)",
        ),
    ] = False,
    config: ConfigOpt = Path("kit.yaml"),
    overrides: SetOpt = None,
    allow_stale: AllowStaleOpt = False,
) -> None:
    """Write a self-contained bundle (weights, preprocessing, blend recipe, manifest) for offline notebooks.

    Example: `kit export ensembles/all.yaml --out bundle/ --half --wheels`, then
    `kit predict --bundle bundle/ --images test/ --sample sample_submission.csv --out submission.csv`
    """
    from kit.predict.run import export_bundle

    p, cfg = _predictor(ensemble, member, None, config, overrides, allow_stale)
    configs = {n: m.model_dump(mode="json") for n, m in cfg.members.items() if n in p.plans}
    size = export_bundle(p, out, half=half, configs=configs, wheels=wheels)
    console.print(f"[green]wrote[/] {out} ({len(p.plans)} member(s), {size / 1e6:.1f} MB)", highlight=False)
    if wheels:
        w = sorted((out / "wheels").iterdir())
        mb = sum(q.stat().st_size for q in w) / 1e6
        console.print(
            f"  of which {out / 'wheels'}: {len(w)} wheels, {mb:.1f} MB; in the notebook: "
            f"`pip install --no-index --find-links {out / 'wheels'} kit`",
            highlight=False,
        )
