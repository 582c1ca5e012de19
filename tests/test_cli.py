"""The CLI's contract: fast help, version, exit codes 0/1/2, no tracebacks for user errors."""

import subprocess
import sys

from loopml import __version__
from tests.conftest import BIN, loopml


def test_help_lists_commands_without_heavy_imports(tmp_path):
    proc = loopml("--help", cwd=tmp_path)
    for command in ("init", "run", "validate", "train", "evaluate", "register", "models"):
        assert command in proc.stdout
    heavy = "('torch', 'mlflow', 'dvc', 'pandas', 'sklearn')"
    probe = f"import sys, loopml.cli.main; print(sorted(m for m in {heavy} if m in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


def test_version(tmp_path):
    assert loopml("--version", cwd=tmp_path).stdout.strip() == f"loopml {__version__}"


def test_bad_usage_exits_2(tmp_path):
    assert loopml("init", cwd=tmp_path, check=False).returncode == 2
    assert loopml("frobnicate", cwd=tmp_path, check=False).returncode == 2


def test_outside_a_project_is_a_clear_error(tmp_path):
    proc = loopml("train", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "no loopml.yaml" in proc.stderr and "loopml init" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_template(tmp_path):
    proc = loopml("init", "x", "--template", "imagenet", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "expected one of digits, tabular" in proc.stderr


def test_python_dash_m_works(tmp_path):
    proc = subprocess.run([str(BIN / "python"), "-m", "loopml", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout
