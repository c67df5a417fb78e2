"""``wattstream train``: the realtime (UCI), realtime fleet and monthly fleet models."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from wattstream.cli.common import console


@contextlib.contextmanager
def _progress() -> Iterator[tuple[Progress, Callable[[Any], None]]]:
    """A rich progress bar fed by training's ``TrainProgress`` events."""
    with Progress(
        TextColumn("[bold]{task.fields[stage]}[/]"),
        BarColumn(),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("train", total=None, stage="load", message="")

        def update(event: Any) -> None:
            loss = f" loss {event.loss:.4f}" if event.loss is not None else ""
            val = f" val {event.val_loss:.4f}" if event.val_loss is not None else ""
            epoch = f"epoch {event.epoch}/{event.epochs} " if event.epochs else ""
            progress.update(
                task,
                stage=event.stage,
                message=f"{epoch}{event.message}{loss}{val}",
                total=event.steps or None,
                completed=event.step,
            )

        yield progress, update


_epochs_option = click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Training epochs (default: the shipped model's setting).",
)
_seed_option = click.option(
    "--seed", type=int, default=None, help="Random seed (default: fixed, reproducible)."
)


@click.group()
def train() -> None:
    """Train models on real data."""


@train.command("realtime")
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="UCI household power file (.txt or .txt.gz), e.g. ../shared/data/...",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("services/realtime/artifacts"),
    show_default=True,
    help="Folder for the new versioned bundle.",
)
@_epochs_option
@_seed_option
def train_realtime_command(
    data_path: Path, out_dir: Path, epochs: int | None, seed: int | None
) -> None:
    """Train the streaming LSTM (15-min bins, all 7 measurements + calendar) and export it.

    Writes Keras, SavedModel and LiteRT artifacts, metadata (scaler, shapes) and metrics
    under OUT/<version>/. Seeded and deterministic.
    """
    from services.realtime.model.training import train_realtime

    with _progress() as (_, update):
        report = train_realtime(data_path, out_dir, epochs=epochs, seed=seed, on_progress=update)
    console.print(
        f"model {report.version} written to {report.bundle_dir} "
        f"(training {report.train_seconds:.0f} s, total {report.total_seconds:.0f} s)"
    )
    console.print_json(data=report.metrics)


@train.command("fleet")
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="London half-hourly file (LCLid,tstp,energy(kWh/hh)) or its folder; bank holidays "
    "are read from lcl_uk_bank_holidays.csv.gz next to it when present.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("services/realtime/artifacts/fleet"),
    show_default=True,
    help="Folder for the new versioned bundle.",
)
@_epochs_option
@click.option(
    "--households",
    type=click.IntRange(min=1),
    default=None,
    help="Train on the first N households of the file only (default: all).",
)
@_seed_option
def train_fleet_command(
    data_path: Path, out_dir: Path, epochs: int | None, households: int | None, seed: int | None
) -> None:
    """Train the global model for energy-only meters (30-min grid, 7 days in, one day of
    quantiles out) across households, and export it (Keras + LiteRT).

    The last 21 days of the data pick the best epoch; a fifth of the households, left out
    of fitting, calibrate the 80 % interval. Writes OUT/<version>/; seeded and deterministic.
    """
    from services.realtime.model.fleet_training import train_fleet

    try:
        with _progress() as (_, update):
            bundle, trained = train_fleet(
                data_path,
                out_dir,
                epochs=epochs,
                seed=seed,
                households=households,
                on_progress=update,
            )
    except ValueError as error:  # data that cannot train a model: say why, no traceback
        raise click.ClickException(str(error)) from error
    console.print(
        f"model {trained.spec.version} written to {bundle} "
        f"(training {trained.metrics['train_seconds']:.0f} s)"
    )
    console.print_json(data=trained.metrics["validation"])


@train.command("monthly")
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of London block_*.csv.gz files (lcl_daily_dataset).",
)
@click.option(
    "--info",
    "info_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="lcl_informations_households.csv(.gz) (default: next to --data).",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("services/monthly/artifacts/fleet_model.json"),
    show_default=True,
    help="Where the fleet model artifact is written.",
)
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Train only on months that end before this day (default: all data).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every draw.")
@click.option(
    "--holdout",
    type=click.FloatRange(0.0, 0.9),
    default=0.0,
    show_default=True,
    help="Share of households never trained on (by stable hash; 0.2 in the benchmark).",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores)."
)
def train_monthly(
    data_dir: Path,
    info_file: Path | None,
    out_file: Path,
    until: Any,
    seed: int,
    holdout: float,
    workers: int | None,
) -> None:
    """Train the monthly fleet model on the London households (seeded, reproducible)."""
    import os

    from services.monthly.training import TrainOptions, read_household_info, sample_dataset
    from services.monthly.training import train as train_fleet

    info_path = info_file or data_dir.parent / "lcl_informations_households.csv.gz"
    if not info_path.exists():
        raise click.ClickException(f"{info_path} not found; pass --info")
    options = TrainOptions(until=until.date() if until else None, seed=seed, holdout=holdout)
    with Progress(
        TextColumn("[bold]{task.description}[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        blocks = progress.add_task("samples (blocks)", total=None)
        samples = sample_dataset(
            data_dir,
            read_household_info(info_path),
            options,
            workers=workers or os.cpu_count() or 1,
            on_block=lambda done, total: progress.update(blocks, completed=done, total=total),
        )
        epochs = progress.add_task("training (epochs)", total=options.epochs)
        model = train_fleet(
            samples,
            options,
            on_epoch=lambda done, total, loss: progress.update(epochs, completed=done),
        )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(model.to_json())
    console.print(f"wrote {out_file} ({out_file.stat().st_size:,} bytes), {model.version}")
    console.print_json(data=dict(model.meta))
