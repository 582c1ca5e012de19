"""`loopml monitor` and `loopml feedback` before any traffic, and their mistakes."""

from tests.conftest import loopml, loopml_json


def test_monitor_without_traffic_and_bad_since(digits):
    quiet = loopml("monitor", cwd=digits)
    assert "No traffic in" in quiet.stdout and "loopml serve" in quiet.stdout
    assert loopml_json("monitor", cwd=digits)["versions"] == []
    bad = loopml("monitor", "--since", "yesterday-ish", cwd=digits, check=False)
    assert bad.returncode == 1 and '--since must be a duration ("30m", "6h", "2d") or an ISO time' in bad.stderr
    assert "yesterday-ish" in bad.stderr and "Traceback" not in bad.stderr


def test_feedback_file_errors(digits, tmp_path):
    missing = loopml("feedback", str(tmp_path / "nope.csv"), cwd=digits, check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
    holes = tmp_path / "holes.csv"
    holes.write_text("id,label\nabc,1\n,2\n")
    refused = loopml("feedback", str(holes), cwd=digits, check=False)
    assert refused.returncode == 1 and "1 row(s) without an id or a label" in refused.stderr
    assert not (digits / ".loopml" / "inference").exists()  # nothing half-written
