"""The MLflow sqlite store of an output folder: created whole or not at all, by one process at a time.

MLflow migrates a new database in place when a client first opens it; two suites starting together on one new
folder used to race through the migrations (one crashed), and a creation cut short left a file every later
run crashed on.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from suites.cli import main
from suites.orchestration.tracking import Tracker, TrackingUnavailable, tracking_uri

# One suite's driver opening its store: imports first, then waits for the go file, so that both processes
# create the store at the same moment. Prints the experiment id.
OPEN_TRACKER = """
import sys, time
from pathlib import Path
import mlflow
from suites.orchestration.tracking import Tracker, tracking_uri
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
print(Tracker(tracking_uri(sys.argv[1])).experiment_id, flush=True)
"""


def test_two_suites_create_one_new_store_together(tmp_path):
    folder, go = tmp_path / "out", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_TRACKER, str(folder), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.communicate()[1][-2000:]
    go.touch()
    outcomes = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outcomes]
    ids = {out.strip() for out, _ in outcomes}
    assert len(ids) == 1  # one experiment, seen by both
    with sqlite3.connect(folder / "mlflow.db") as db:
        names = [row[0] for row in db.execute("select name from experiments")]
    assert sorted(names) == ["Default", "aurora-bench"]
    assert not list(folder.glob("*.partial*"))


def _full_disk(engine):
    """Stands in for MLflow's migrations on a disk that fills up: the tables exist, the migrations fail."""
    import sqlite3 as sqlite
    from pathlib import Path

    from sqlalchemy.exc import OperationalError

    assert Path(engine.url.database).exists()  # the temporary database was already created
    raise OperationalError("ALTER TABLE ...", {}, sqlite.OperationalError("database or disk is full"))


def test_a_creation_cut_short_leaves_no_store_and_the_next_one_works(tmp_path, monkeypatch):
    import mlflow.store.db.utils as db_utils

    uri = tracking_uri(tmp_path / "out")
    with monkeypatch.context() as patch:
        patch.setattr(db_utils, "_upgrade_db", _full_disk)
        with pytest.raises(TrackingUnavailable, match=r"cannot create the MLflow store .*mlflow\.db \(database or disk is full\)"):
            Tracker(uri)
    leftovers = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert leftovers == [".mlflow.db.lock"]  # no mlflow.db, no temporary database or journal
    tracker = Tracker(uri)  # disk space back: the next run creates the store
    assert tracker.client.get_experiment(tracker.experiment_id).name == "aurora-bench"
    assert (tmp_path / "out" / "mlflow.db").is_file()


def test_a_full_disk_stops_a_suite_with_one_line_before_ray(tmp_path, monkeypatch, capsys):
    import mlflow.store.db.utils as db_utils

    monkeypatch.setattr(db_utils, "_upgrade_db", _full_disk)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: full\nbenchmarks: [test-tiny]\nmethods: {frozen: {}}\ntrain: {steps: 1, batch_size: 2}\n")
    code = main(["suite", str(spec), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "database or disk is full" in err[0], err
    assert not (tmp_path / "out" / "mlflow.db").exists() and not (tmp_path / "out" / "ray").exists()
