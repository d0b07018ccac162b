"""``python -m evalkit.cache``: the cache seen per kind and entry, pruned by age or size, verified by its hashes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalkit import cache

from ..conftest import REPO, run_cli, tiny_onnx  # noqa: TID252
from .test_cli import imagefolder  # noqa: TID252


def command(*args: str, cache_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evalkit.cache", *args, "--dir", str(cache_dir)], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)


@pytest.fixture
def filled(tmp_path) -> Path:
    """A cache a real fp16 run filled: the recipe's pixels (tensors/) and the fp16 model (precision/)."""
    pytest.importorskip("onnxruntime", reason="the fp16 transform needs evalkit[ort]")
    folder = tmp_path / "cache"
    out = run_cli(f"model.onnx={tiny_onnx(tmp_path / 'm.onnx')}", "precision=fp16", "dataset=imagefolder",
                  f"dataset.root={imagefolder(tmp_path, n=3)}", f"results.dir={tmp_path / 'r'}",
                  f"cache_dir={folder}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return folder


def test_list_shows_each_kind_and_entry_with_its_size_and_last_use(filled):
    out = command(cache_dir=filled)
    assert out.returncode == 0, out.stderr
    kinds = {e.kind for e in cache.entries(filled)}
    assert kinds == {"tensors", "precision"}
    assert "tensors" in out.stdout and "precision" in out.stdout and "timm recipe" in out.stdout and " GB" in out.stdout
    (tensors,) = [e for e in cache.entries(filled) if e.kind == "tensors"]
    assert len(tensors.paths) == 3 and tensors.bytes > 0  # data, state and description: one entry


def test_prune_by_age_and_by_size_removes_the_least_recently_used_first(filled):
    (old,) = [e for e in cache.entries(filled) if e.kind == "precision"]
    for p in old.paths:
        os.utime(p, (time.time() - 40 * 86400,) * 2)
    out = command("prune", "--older-than", "30d", cache_dir=filled)
    assert out.returncode == 0 and "removed 1 entries" in out.stdout, out.stdout + out.stderr
    assert {e.kind for e in cache.entries(filled)} == {"tensors"}
    assert command("prune", "--older-than", "soon", cache_dir=filled).returncode == 2
    out = command("prune", "--max-gb", "0", cache_dir=filled)
    assert out.returncode == 0 and cache.entries(filled) == []


def test_verify_drops_a_bit_flipped_entry_and_keeps_the_intact_ones(filled):
    (model,) = [e for e in cache.entries(filled) if e.kind == "precision"]
    onnx = next(p for p in model.paths if p.suffix == ".onnx")
    data = bytearray(onnx.read_bytes())
    data[-10] ^= 0x01
    onnx.write_bytes(bytes(data))
    out = command("verify", cache_dir=filled)
    assert out.returncode == 0 and "1 corrupt entries removed" in out.stdout and "precision/" in out.stdout, out.stdout
    assert {e.kind for e in cache.entries(filled)} == {"tensors"}
    # a flipped bit in a row of the recipe's pixels
    (pixels,) = cache.entries(filled)
    u8 = next(p for p in pixels.paths if p.suffix == ".u8")
    rows = bytearray(u8.read_bytes())
    rows[1000] ^= 0x80
    u8.write_bytes(bytes(rows))
    assert "1 corrupt entries removed" in command("verify", cache_dir=filled).stdout
    assert cache.entries(filled) == []


def test_cache_max_gb_bounds_the_cache_after_a_run(tmp_path):
    folder = tmp_path / "cache"
    (folder / "onnx").mkdir(parents=True)
    stale = folder / "onnx" / "old-0123.onnx"
    stale.write_bytes(b"\0" * 2_000_000)
    os.utime(stale, (time.time() - 86400,) * 2)
    out = run_cli(f"model.onnx={tiny_onnx(tmp_path / 'm.onnx')}", "dataset=imagefolder",
                  f"dataset.root={imagefolder(tmp_path, n=3)}", f"results.dir={tmp_path / 'r'}",
                  f"cache_dir={folder}", "cache.max_gb=0.001", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not stale.exists() and "cache: removed 1 least recently used entries" in out.stdout
    assert [e.kind for e in cache.entries(folder)] == ["tensors"]  # this run's, used last, stays
