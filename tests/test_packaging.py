"""The wheel: one import name (evalkit), its data and plug-in entry points, and it runs where it is installed.

The unrelated registry packages ``conf``, ``preprocess`` and ``runtimes`` may be installed beside evalkit,
and a user's working folder may hold folders of those names: evalkit imports none of them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from evalkit.contract import GROUPS as CONTRACT_GROUPS

from .conftest import REPO, tiny_onnx

pytestmark = pytest.mark.slow

#: every plug-in group of the contract; each has built-in plug-ins, so each is in the wheel's entry points
GROUPS = tuple(CONTRACT_GROUPS.values())
#: what a wheel build needs of the checkout (build outputs, caches and the venv stay behind)
LEFT_BEHIND = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                     "results", "outputs", "multirun")
RAISES = "raise ImportError('this is the unrelated {name!r} package, not part of evalkit')\n"


def run(*cmd: str | Path, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def stand_in_wheel(folder: Path, name: str) -> Path:
    """A wheel of a distribution ``name`` with a top-level package ``name`` whose import raises."""
    dist_info = f"{name}-0.0.1.dist-info"
    files = {f"{name}/__init__.py": RAISES.format(name=name),
             f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n",
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: evalkit-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{dist_info}/top_level.txt": f"{name}\n"}

    def digest(text: str) -> str:
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    record = "".join(f"{p},{digest(t)},{len(t.encode())}\n" for p, t in files.items()) + f"{dist_info}/RECORD,,\n"
    path = folder / f"{name}-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, text in {**files, f"{dist_info}/RECORD": record}.items():
            z.writestr(p, text)
    return path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel . --no-deps`` of a copy of the checkout (an in-tree build would leave build/ behind)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=LEFT_BEHIND)
    run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist",
        cwd=source)
    (found,) = (tmp / "dist").glob("evalkit-*.whl")
    return found


def test_the_wheel_has_one_import_name_its_data_and_the_plugin_groups(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    # one import name, plus the SLURM launcher under the namespace Hydra takes plugins from; no
    # hydra_plugins/__init__.py, which would hide every other package's Hydra plugins
    assert {n.split("/")[0] for n in names} == {"evalkit", "hydra_plugins", dist_info}
    assert {n for n in names if n.startswith("hydra_plugins/")} == {"hydra_plugins/evalkit/__init__.py"}
    assert {"evalkit/conf/config.yaml", "evalkit/runtimes/ort.py", "evalkit/preprocess/timm.py"} <= set(names)
    missing = [g for g in GROUPS if f"[{g}]" not in entry_points]
    assert not missing, f"entry-point groups missing from the wheel: {missing}\n{entry_points}"


def test_the_installed_wheel_scores_the_photos_beside_unrelated_conf_runtimes_preprocess(wheel, sample_root, tmp_path):
    # a fresh venv that sees the dev venv's third-party packages through a .pth path line; a path line does not
    # run that folder's own .pth files, so the editable evalkit of the dev venv stays out
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip())
    (site / "dev-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    stand_ins = [stand_in_wheel(tmp_path, name) for name in ("conf", "preprocess", "runtimes")]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["EVALKIT_CACHE"] = str(tmp_path / "cache")
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, *stand_ins, cwd=tmp_path, env=env)

    # the working folder holds decoy packages of the same names
    work = tmp_path / "work"
    for name in ("conf", "runtimes", "preprocess"):
        (work / name).mkdir(parents=True)
        (work / name / "__init__.py").write_text(RAISES.format(name=name))
    where = json.loads(run(python, "-c", "import json, evalkit, evalkit.conf, evalkit.runtimes, evalkit.preprocess; "
                           "print(json.dumps([m.__file__ for m in (evalkit, evalkit.conf, evalkit.runtimes, "
                           "evalkit.preprocess)]))", cwd=work, env=env).stdout)
    assert all(Path(f).is_relative_to(site / "evalkit") for f in where), where

    onnx = tiny_onnx(tmp_path / "tiny.onnx")
    results = tmp_path / "results"
    proc = subprocess.run([str(python), "-m", "evalkit", f"model.onnx={onnx}", "model.references=[]",
                           "dataset=imagefolder", f"dataset.root={sample_root}", f"results.dir={results}",
                           "results.history=", "progress=false"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_json,) = results.glob("*/run.json")
    assert json.loads(run_json.read_text())["metrics"]["n"] == 200
