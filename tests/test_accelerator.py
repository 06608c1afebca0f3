"""benchmarks/accelerator.py: the --tiny run on the CPU, so that the device command never meets a bug first."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "accelerator.py"
sys.path.insert(0, str(SCRIPT.parent))
import accelerator  # noqa: E402


def _run(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_tiny_run_measures_every_part_and_writes_a_valid_report(tmp_path, shared_datasets):
    out = tmp_path / "accelerator.json"
    completed = _run("--tiny", "--data-dir", shared_datasets, "--out", out)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    accelerator.check_report(report)
    assert report["mode"] == "tiny" and report["precision"]["default_matmul_precision"] == "highest"
    assert {name: part["status"] for name, part in report["parts"].items()} == dict.fromkeys(accelerator.PARTS, "ok")
    assert all(part["skipped"] == [] for part in report["parts"].values())
    kernels = report["parts"]["kernels"]["results"]
    # float32 at full precision against float64: TF32 (10-bit mantissa) would give errors near 1e-3 and above.
    assert 0 <= kernels["max_rel_error_nngp"] < 1e-4 and 0 <= kernels["max_rel_error_ntk"] < 2e-3
    [row] = report["parts"]["training"]["results"]["rows"]
    assert row["width"] == 16 and row["ours_ms_per_step"] > 0 and row["plain_ms_per_step"] > 0
    limit = report["parts"]["adam_limit"]["results"]
    assert limit["samples"] == 32 and limit["ms_per_step"] > 0 and 0 < limit["hbm_fraction"] < 1
    cost = report["parts"]["adam_limit_cost"]["results"]
    assert [p["samples"] for p in cost["engine"]] == [32, 64] and [p["width"] for p in cost["finite"]] == [16, 32]
    assert cost["comparison"]["target"] == 0.05


def test_a_failing_part_is_recorded_and_the_run_goes_on(tmp_path):
    out = tmp_path / "accelerator.json"
    completed = _run("--tiny", "--data-dir", tmp_path / "no-data", "--parts", "kernels", "nnpk", "--out", out)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    accelerator.check_report(report)
    parts = report["parts"]
    assert [parts[name]["status"] for name in accelerator.PARTS] == ["failed", "skipped", "failed", "skipped",
                                                                      "skipped"]
    assert "no-data" in parts["kernels"]["error"] and "Traceback" in parts["nnpk"]["traceback"]
    assert "--parts" in parts["training"]["error"]


def test_schema_check_names_every_problem():
    report = dict(schema=accelerator.SCHEMA, mode="full", date="2026-01-01", command=["x"], machine={}, jax="0",
                  devices=["gpu"], precision=dict(default_matmul_precision="highest"), budget_s=1, wall_s=1.0,
                  parts={name: dict(status="skipped") for name in accelerator.PARTS})
    accelerator.check_report(report)
    broken = copy.deepcopy(report)
    broken["precision"]["default_matmul_precision"] = "default"
    broken["parts"]["nnpk"] = dict(status="ok", results=dict(nnpk_s=1.0, matmul_s=float("nan"), tflops=1.0))
    broken["parts"]["kernels"] = dict(status="failed")
    del broken["parts"]["training"]
    with pytest.raises(ValueError) as error:
        accelerator.check_report(broken)
    message = str(error.value)
    for expected in ("precision", "parts: expected", "parts.kernels: failed without an error",
                     "parts.nnpk.results.matmul_s", "parts.nnpk.results.fraction_of_matmul"):
        assert expected in message


def test_readme_gives_one_device_command_the_script_accepts():
    text = (ROOT / "benchmarks" / "README.md").read_text()
    section = text[text.index("### The command"):]
    start = section.index("```bash\n") + len("```bash\n")
    command = section[start:section.index("\n```", start)]
    assert "\n" not in command and len(command) <= 2000
    script_args = command.split("benchmarks/accelerator.py", 1)[1].split("2>&1")[0].split()
    args = accelerator.build_parser().parse_args(script_args)
    assert not args.tiny and args.data_dir == ".data" and args.out == "$OUT/accelerator.json"
    assert '".whl", ".data"' in section and "--target /tmp/site .whl/*.whl" in command
