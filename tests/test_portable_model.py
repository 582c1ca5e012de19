"""A registered model is a portable MLflow model: in a fresh venv holding only the model's own
requirements.txt (no loopml, no project on the path), `mlflow.pyfunc.load_model` + `predict` give
the offline predictions, for a raw-table pipeline whose preprocessing lives in `loopml_runtime`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from loopml import examples
from loopml_runtime import Predictor
from tests.conftest import loopml, loopml_json

pytestmark = pytest.mark.slow

PROBE = """
import json, sys
import pandas as pd
try:
    import loopml  # noqa: F401
    sys.exit("loopml is importable here: the test proves nothing")
except ImportError:
    pass
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.read_csv(sys.argv[2])
print(json.dumps(list(model.predict(rows))))
"""


def test_the_champion_loads_and_predicts_with_nothing_but_its_requirements(tmp_path):
    examples.write(examples.churn(800, seed=4), str(tmp_path / "churn.csv"))
    loopml("init", "churn", "--from", "churn.csv", "--target", "churned", "--copy", cwd=tmp_path)
    project = tmp_path / "churn"
    assert loopml_json("run", cwd=project)["ok"]
    trained = json.loads((project / "outputs" / "train.json").read_text())
    model_dir = _logged_model_dir(project, trained["run_id"])
    pyfunc = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["python_function"]
    assert pyfunc["artifacts"]["package"]["uri"] == "model"  # not an absolute path into outputs/ of this machine
    assert pyfunc["code"] and (model_dir / pyfunc["code"] / "loopml_runtime" / "predictor.py").is_file()
    requirements = (model_dir / "requirements.txt").read_text()
    assert "loopml" not in requirements.replace("loopml_runtime", "") and "+cpu" not in requirements

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # --no-compile: bytecode is written on import instead of for every installed file (twice as fast)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-compile", "-r",
                          str(model_dir / "requirements.txt")], capture_output=True, text=True)  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-2000:]
    rows = pd.read_csv(tmp_path / "churn.csv").drop(columns="churned").head(30)
    rows.loc[2, "plan"] = "platinum"  # unseen: answered
    rows.to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "probe.py").write_text(PROBE)
    done = subprocess.run([str(venv / "bin" / "python"), str(tmp_path / "probe.py"), str(model_dir),
                           str(tmp_path / "rows.csv")], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    expected = Predictor(project / "outputs" / "model").predict(pd.read_csv(tmp_path / "rows.csv")).tolist()
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected


def _logged_model_dir(project: Path, run_id: str) -> Path:
    """The logged model's folder in the project's local artifact store."""
    for mlmodel in (project / ".loopml" / "artifacts").rglob("MLmodel"):
        if run_id in mlmodel.read_text():
            return mlmodel.parent
    raise AssertionError("the logged model is not in the artifact store")
