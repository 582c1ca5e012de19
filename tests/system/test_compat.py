"""The compatibility tables and rules, checked against NVIDIA's published numbers."""

from loopml.system import compat


def test_driver_verdicts():
    assert compat.driver_verdict("580.159.04", "13.0") == ("ok", "580.65.06")
    assert compat.driver_verdict("570.26", "12.8") == ("ok", "570.26")
    assert compat.driver_verdict("535.129.03", "12.8") == ("minor-compat", "570.26")
    assert compat.driver_verdict("535.129.03", "13.0") == ("too-old", "580.65.06")
    assert compat.driver_verdict("470.82.01", "11.8") == ("minor-compat", "520.61.05")
    assert compat.driver_verdict("418.39", "11.0")[0] == "too-old"
    # a minor newer than the table needs at least what the newest known one needs
    assert compat.driver_verdict("580.65.06", "13.2") == ("minor-compat", "590.44.01")


def test_arch_support():
    assert compat.arch_supported((9, 0), ["sm_80", "sm_90"])
    assert compat.arch_supported((8, 6), ["sm_80"])  # same major, newer minor runs sm_80 cubins
    assert not compat.arch_supported((12, 0), ["sm_80", "sm_90"])  # Blackwell consumer needs sm_120
    assert compat.arch_supported((12, 0), ["sm_90", "compute_90"])  # PTX JIT
    assert not compat.arch_supported((6, 1), ["sm_75", "sm_80"])
    assert "cu128" in compat.wheel_advice((12, 0)) and "cu126" in compat.wheel_advice((6, 1))


def test_cuda_from_nvml():
    assert compat.cuda_from_int(13000) == "13.0" and compat.cuda_from_int(12020) == "12.2"


def test_low_disk_is_reported(tmp_path, monkeypatch):
    from collections import namedtuple

    from loopml.system import doctor, host

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(host.shutil, "disk_usage", lambda path: usage(100 * 2**30, 99 * 2**30, 2**30))
    report = doctor.inspect(tmp_path, tmp_path)
    assert {f.id for f in report.findings} >= {"disk-full"} and report.level == "none"
