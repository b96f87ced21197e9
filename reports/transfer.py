"""Zero-shot transfer tables: trials' tuned weights evaluated on another benchmark of their task without training
(``aurora-bench eval --run-id RUN --benchmark OTHER``), as BLIP's zero-shot Flickr30K table evaluates COCO-tuned
weights. Per (suite, tier, task): a row per method, a column per source→target pair holding the target's primary
metric (mean ± std over seeds), read from the transfer runs' records."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reports.captions import caption, itm_protocol, vqa_protocol
from reports.frame import trial_row
from reports.grid import Column, Grid, reproduced_rows
from reports.specs import by_params, method_stub
from reports.store import _without_progress_bars, read_record
from suites.record import TrialRecord

ARROW = "→"
# The primary metrics: their column and how the caption says they were scored.
PRIMARY = {"itm_r_mean": (Column("itm_r_mean", "R_mean", tex_header="R$_\\mathrm{mean}$"), itm_protocol),
           "accuracy": (Column("accuracy", "Acc."), vqa_protocol)}


@dataclass
class Transfer:
    source: str  # the benchmark the weights were tuned on
    record: TrialRecord  # their evaluation on the target benchmark (``record.benchmark``)


def load_transfers(tracking_uri: str, experiment: str = "aurora-bench") -> list[Transfer]:
    """The experiment's finished transfer runs (MLflow tag ``kind: transfer``), oldest first; of a transfer
    evaluated more than once, the newest only."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], "tags.kind = 'transfer' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time ASC"], max_results=50_000)
    with tempfile.TemporaryDirectory() as tmp, _without_progress_bars():
        transfers = [Transfer(run.data.tags.get("source_benchmark", "?"), read_record(client, run.info.run_id, Path(tmp)))
                     for run in runs]
    newest = {_key(t): i for i, t in enumerate(transfers)}
    return [t for i, t in enumerate(transfers) if newest[_key(t)] == i]


def _key(t: Transfer) -> tuple:
    r = t.record
    return r.spec.get("suite", ""), t.source, r.benchmark, r.row, r.seed


def transfer_frame(transfers: list[Transfer]) -> pd.DataFrame:
    """One row per transfer, as ``reports.frame`` builds a trial's, with ``source``, ``target`` and
    ``benchmark`` = "source→target" (the table's column)."""
    rows = []
    for t in transfers:
        row = trial_row(t.record)
        rows.append({**row, "source": t.source, "target": row["benchmark"],
                     "benchmark": f"{t.source}{ARROW}{row['benchmark']}"})
    return pd.DataFrame(rows)


def transfer_grids(transfers: pd.DataFrame, suite: str, tier: str) -> list[tuple[str, Grid]]:
    """(name, grid) per task of one (suite, tier)'s transfers (``transfer_frame``): ``transfer_<task>``."""
    if transfers.empty:
        return []
    return [(f"transfer_{task}", transfer_grid(part, suite, tier, task))
            for task, part in transfers.groupby("task", sort=True)]


def transfer_grid(part: pd.DataFrame, suite: str, tier: str, task: str) -> Grid:
    """One task's transfer table: a row per method, a column per source→target pair."""
    primary = part["primary_metric"].iloc[0]
    column, protocol = PRIMARY.get(primary, (Column(primary, primary), lambda _: ""))
    # the pair also names its column's group: a table of one pair spans its header with it
    groups = [(pair, [Column(column.metric, column.header, tex_header=column.tex_header, group=pair)])
              for pair in sorted(part["benchmark"].unique())]
    rows = reproduced_rows(part, groups, method_stub, by_params)
    sources = ", ".join(sorted(part["source"].unique()))
    title = f"Zero-shot transfer of weights tuned on {sources}"
    how = (f"Each method's weights tuned on the source benchmark, evaluated on the target benchmark's test split "
           f"without further training (columns: source{ARROW}target; cells: the target's primary metric, "
           f"{column.header}). {protocol(part)}")
    label = f"tab:{suite or 'runs'}-{tier}-transfer-{task}".replace("_", "-")
    return Grid(title=title, caption=caption(title, how, part, tier, False, False), label=label,
                stub_headers=["Method", "Params"], groups=groups, rows=rows)
