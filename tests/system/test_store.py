"""Several processes opening one new SQLite MLflow store at the same moment all get a complete store."""

import sqlite3
import subprocess
import sys

from tests.helpers import REPO_ROOT

OPEN_AND_LIST = (
    "import sys\n"
    "from aae_tune.mlflow_store import mlflow_client\n"
    "client = mlflow_client(sys.argv[1], registry=True)\n"
    "print(len(client.search_experiments()), len(client.search_registered_models()))\n"
)
PROCESSES = 4


def test_concurrent_first_opens_all_succeed(tmp_path):
    # Without the folder lock one of these dies in MLflow's migrations ("... 0 found", "table ... already exists").
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AND_LIST, uri], cwd=REPO_ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(PROCESSES)]
    outcomes = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    assert [code for code, _, _ in outcomes] == [0] * PROCESSES, [err[-2000:] for _, _, err in outcomes]
    assert {out.strip() for _, out, _ in outcomes} == {"1 0"}  # the Default experiment, no models
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        leftovers = db.execute("select name from sqlite_master where name like '_alembic_tmp%'").fetchall()
    assert leftovers == []
