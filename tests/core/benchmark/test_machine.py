"""The machine record that reports carry beside their latencies."""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_distill.core.benchmark import machine_info, machine_summary

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma f16c bmi2
"""
SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: avx2 fma avx512f avx512_vnni avx512_bf16 amx_int8 amx_bf16
processor\t: 1
model name\t: ignored, the first CPU's name is kept
flags\t\t: sse2
"""
GRAVITON = """processor\t: 0
Features\t: fp asimd evtstrm aes asimddp i8mm
CPU implementer\t: 0x41
"""


def test_an_avx2_cpu_without_vnni_is_recorded_as_such(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(EPYC)
    info = machine_info(tmp_path / "cpuinfo")
    assert info["cpu"] == "AMD EPYC 7B13"
    assert info["cpu_flags"] == ["avx2", "fma"]
    assert info["int8_dot_product"] is False
    assert info["torch"] == torch.__version__ and info["torch_threads"] == torch.get_num_threads()
    assert info["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    summary = machine_summary(info)
    assert summary.startswith("AMD EPYC 7B13, ") and "no int8 dot-product instruction" in summary


def test_vnni_amx_and_arm_dot_product_are_recognised(tmp_path: Path) -> None:
    (tmp_path / "xeon").write_text(SAPPHIRE_RAPIDS)
    (tmp_path / "arm").write_text(GRAVITON)
    xeon, arm = machine_info(tmp_path / "xeon"), machine_info(tmp_path / "arm")
    assert xeon["cpu"] == "Intel(R) Xeon(R) Platinum 8481C"
    assert xeon["cpu_flags"] == ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16"]
    assert xeon["int8_dot_product"] is True
    assert arm["cpu_flags"] == ["asimd", "asimddp", "i8mm"] and arm["int8_dot_product"] is True


def test_without_cpuinfo_the_record_still_names_the_machine(tmp_path: Path) -> None:
    info = machine_info(tmp_path / "missing")
    assert info["cpu"] and info["cpu_flags"] == [] and info["int8_dot_product"] is False
    assert isinstance(info["logical_cpus"], int) and info["logical_cpus"] >= 1
