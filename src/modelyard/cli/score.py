"""``modelyard score``: predictions for a whole Parquet file, with a lineage record beside them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from modelyard.cli._common import WorkspaceOpt, console, open_workspace


def score(
    ref: str = typer.Argument(..., help="model to score with: NAME@ALIAS or NAME/VERSION"),
    input_path: Path = typer.Option(..., "--input", "-i", help="Parquet file to score"),
    output_path: Path = typer.Option(..., "--output", "-o", help="Parquet file to write"),
    chunk_size: int = typer.Option(
        50_000, "--chunk-size", help="rows per chunk; memory grows with it, not with the file"
    ),
    executor: str | None = typer.Option(
        None,
        "--executor",
        help="local | ray | ray://HOST:PORT (default: the executor.url setting, local)",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="with --executor ray: a running cluster (default: a new one)"
    ),
    keep_input: bool = typer.Option(
        True, "--keep-input/--no-keep-input", help="copy the input columns into the output"
    ),
    log_predictions: bool = typer.Option(
        True, "--log-predictions/--no-log-predictions", help="keep every scored prediction"
    ),
    workspace: str = WorkspaceOpt,
) -> None:
    """Score a Parquet file in chunks; write OUTPUT and OUTPUT.lineage.json."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from modelyard.serving import score as run_score

    ws = open_workspace(workspace)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    # The bar appears once the input has passed its checks: an error stays one line.
    progress = Progress(*columns, console=console)
    bar: TaskID | None = None

    def step(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            progress.start()
            bar = progress.add_task(f"scoring with {escape(ref)}", total=total)
        progress.update(bar, completed=done)

    try:
        result = run_score(
            ws.registry,
            ref,
            input_path,
            output_path,
            chunk_size=chunk_size,
            # The library checks the name and lists the valid ones; ws.executor checks the
            # setting's value, naming where it came from.
            executor=executor if executor is not None else ws.executor.url,
            ray_address=ray_address,
            keep_input=keep_input,
            progress=step,
            log_predictions=log_predictions,
            prediction_log=ws.predictions if log_predictions else None,
        )
    finally:
        progress.stop()
    # The request id is how labels for these rows find them later (with the row number).
    logged = "" if result.request_id is None else f", logged as request {result.request_id}"
    console.print(
        f"scored {result.rows_out} rows with {result.model}/{result.version} in "
        f"{result.chunks} chunk(s), {result.seconds:.2f} s{logged}: "
        f"{escape(str(result.output))}; lineage: {escape(str(result.lineage))}",
        soft_wrap=True,
    )
