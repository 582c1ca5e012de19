"""A killed training resumes from its last checkpoint and ends with the same weights."""

import json
import signal
import subprocess
import time

import pytest
import torch

from tests.conftest import BIN, loopml, loopml_json, tool_env

pytestmark = pytest.mark.slow
LONG = {"LOOPML_TRAIN__EPOCHS": "8", "LOOPML_TRAIN__PATIENCE": "0", "LOOPML_MODEL__PARAMS__CHANNELS": "8"}


def weights(project):
    return torch.load(project / "outputs" / "model" / "weights.pt", weights_only=True)


def test_killed_run_resumes_to_identical_weights(digits):
    loopml("validate", cwd=digits)
    full = loopml_json("train", cwd=digits, env=LONG)
    assert full["epochs_run"] == 8 and full["resumed_from_epoch"] is None
    expected = weights(digits)

    checkpoint = digits / ".loopml" / "checkpoints" / "last.pt"
    checkpoint.unlink()  # the finished run's checkpoint; wait for the new run's own
    proc = subprocess.Popen([str(BIN / "loopml"), "train"], cwd=digits, env=tool_env(LONG),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= killed_at < 7

    resumed = loopml_json("train", "--resume", cwd=digits, env=LONG)
    assert resumed["resumed_from_epoch"] == killed_at + 1
    assert [h["epoch"] for h in resumed["history"]] == list(range(1, 9))
    got = weights(digits)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_resume_refuses_a_checkpoint_from_other_settings(digits):
    loopml("validate", cwd=digits)
    loopml("train", cwd=digits, env={**LONG, "LOOPML_TRAIN__EPOCHS": "1"})
    marker = json.loads((digits / ".loopml" / "train-run.json").read_text())
    proc = loopml("train", "--resume", cwd=digits, env={**LONG, "LOOPML_TRAIN__LR": "0.01"}, check=False)
    assert proc.returncode == 1 and "written for other settings" in proc.stderr
    assert marker["fingerprint"]
