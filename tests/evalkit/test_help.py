"""Every command answers --help: what it does, its arguments, an example; evalkit's own help lists every choice."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import evalkit
from evalkit.usage import COMMANDS

from ..conftest import REPO, run_cli  # noqa: TID252


def commands() -> list[str]:
    """Every evalkit module with a main(): a ``python -m evalkit.NAME`` command."""
    found = []
    for module in pkgutil.iter_modules(evalkit.__path__):
        path = Path(evalkit.__path__[0]) / f"{module.name}.py"
        if path.is_file() and "\ndef main(" in path.read_text():
            found.append(module.name)
    return sorted(found)


@pytest.mark.parametrize("name", commands())
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_answers_help(name, flag):
    module = "evalkit" if name == "cli" else f"evalkit.{name}"
    out = subprocess.run([sys.executable, "-m", module, flag], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and "python -m evalkit" in out.stdout.split("examples:")[-1]
    assert "Traceback" not in out.stderr


def test_the_main_help_lists_every_choice_and_command(tmp_path):
    out = run_cli("--help", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("usage: python -m evalkit")
    assert "powered by Hydra" not in out.stdout and "_schema" not in out.stdout
    for shown in ("mmcls/cspresnext50", "model: ", "preprocess: mmcls, paddle, resnest, square, timm",
                  "runtime: ", "dataset: ", "precision: ", "experiment: nightly", "hydra/launcher: ", "slurm_cpu"):
        assert shown in out.stdout
    assert set(COMMANDS) == set(commands()) - {"cli"}
    for name in COMMANDS:
        assert f"python -m evalkit.{name} " in out.stdout


def test_hydras_own_options_still_work(tmp_path):
    job = run_cli("--cfg", "job", "model=cspresnext50", cwd=tmp_path)
    assert job.returncode == 0 and "name: cspresnext50" in job.stdout
    hydra_help = subprocess.run([sys.executable, "-m", "evalkit", "--hydra-help"], cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
    assert hydra_help.returncode == 0 and hydra_help.stdout.startswith("Hydra (")


@pytest.mark.parametrize("override,message", [
    ("model=cspresnext5", "unknown model=cspresnext5; did you mean cspresnext50 or cspresnext50_256?"),
    ("runtime=onnxruntime", "unknown runtime=onnxruntime; did you mean ort?"),
    ("model=mmcls/cspresnet5", "unknown model=mmcls/cspresnet5; did you mean mmcls/cspresnet50?"),
])
def test_an_unknown_choice_is_one_line_with_the_closest_real_choices(tmp_path, override, message):
    out = run_cli(override, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == f"evalkit: config error: {message}"


@pytest.mark.parametrize("args,message", [
    (["--model", "cspresnext50"], "evalkit takes Hydra overrides: model=cspresnext50 (not --model cspresnext50)"),
    (["--model=cspresnext50", "--data-dir", "/d"],
     "evalkit takes Hydra overrides: model=cspresnext50 dataset=imagefolder dataset.root=/d "
     "(not --model cspresnext50 --data-dir /d)"),
    (["-b", "64"], "evalkit takes Hydra overrides: runtime.batch_size=64 (not -b 64)"),
])
def test_timm_style_flags_get_the_overrides_that_say_the_same(tmp_path, args, message):
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == f"evalkit: error: {message}"
