"""The README's commands: `make run` works from a clean tree (`make test` is what CI runs)."""

import json
import subprocess

import pytest

from tests.conftest import NO_WALL_CLOCK_GATE, REPO, tool_env

pytestmark = pytest.mark.slow


def test_readme_opens_with_the_two_commands():
    head = (REPO / "README.md").read_text().split("```")[1]
    assert "make run" in head and "make test" in head


def test_make_run_leaves_a_champion_and_reruns_cached(tmp_path):
    demo = tmp_path / "demo"
    env = tool_env(NO_WALL_CLOCK_GATE)
    first = subprocess.run(["make", "run", f"DEMO={demo}"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=900)  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    evaluated = json.loads((demo / "outputs" / "evaluate.json").read_text())
    assert evaluated["metrics"]["accuracy"] >= 0.95  # the bar for the digits example
    assert "champion" in json.loads((demo / "outputs" / "register.json").read_text())["aliases"]
    second = subprocess.run(["make", "run", f"DEMO={demo}"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert second.returncode == 0 and second.stdout.count("cached") == 5, second.stdout
