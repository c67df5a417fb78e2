"""``wattstream monthly``: the monthly service's batch commands (the fleet's forecasts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from wattstream.cli.common import console


@click.group()
def monthly() -> None:
    """The monthly service's batch commands."""


@monthly.command("fleet")
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of London block_*.csv.gz files (lcl_daily_dataset).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write results under this folder (same keys as the models bucket).",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores)."
)
def monthly_fleet(data_dir: Path, out_dir: Path | None, workers: int | None) -> None:
    """Forecast the rest of the month for every household, in parallel, with progress."""
    from services.monthly.fleet import run_fleet

    with Progress(
        TextColumn("[bold]monthly fleet[/]"),
        BarColumn(),
        TextColumn(
            "{task.completed}/{task.total} blocks, {task.fields[households]:,} households,"
            " {task.fields[fallbacks]:,} fallbacks"
        ),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("fleet", total=None, households=0, fallbacks=0)

        def update(event: Any) -> None:
            progress.update(
                task,
                total=event.blocks_total,
                completed=event.blocks_done,
                households=event.households_done,
                fallbacks=event.fallbacks,
            )

        report = run_fleet(data_dir, out_dir, workers=workers, on_progress=update)
    console.print_json(data=report.summary())
