"""Writers that play the device: vendor output files in their exact formats, from known logits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evalkit.classes import imagenet1k


def benchmark(folder: Path, ids: list[str], logits: np.ndarray, ext: str = "txt") -> Path:
    """Ascend benchmark tool: <stem>_1.txt (one line of values) or <stem>_1.bin (float32)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, row in zip(ids, logits):
        if ext == "txt":
            (folder / f"{i}_1.txt").write_text(" ".join(f"{v:.9g}" for v in row) + "\n")
        else:
            row.astype("<f4").tofile(folder / f"{i}_1.bin")
    return folder


def ais_bench(folder: Path, ids: list[str], logits: np.ndarray, ext: str = "npy") -> Path:
    """ais_bench at batch size 1: <stem>_0.{npy,bin,txt}."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, row in zip(ids, logits):
        if ext == "npy":
            np.save(folder / f"{i}_0.npy", row[None])
        elif ext == "bin":
            row.astype("<f4").tofile(folder / f"{i}_0.bin")
        else:
            (folder / f"{i}_0.txt").write_text(" ".join(f"{v:.9g}" for v in row))
    return folder


def ais_bench_batched(folder: Path, ids: list[str], logits: np.ndarray, batch: int = 16) -> Path:
    """ais_bench at batch size > 1: one <first stem>_0.bin per batch, mapped by <folder>_summary.json."""
    folder.mkdir(parents=True, exist_ok=True)
    filesinfo = {}
    for n, start in enumerate(range(0, len(ids), batch)):
        chunk = ids[start:start + batch]
        out = folder / f"{chunk[0]}_0.bin"
        logits[start:start + batch].astype("<f4").tofile(out)
        filesinfo[str(n)] = {"infiles": [f"/data/prep_dataset/{i}.bin" for i in chunk], "outfiles": [str(out)]}
    summary = {"filesinfo": filesinfo, "NPU_compute_time": {"min": 1.1, "max": 2.0, "mean": 1.25, "median": 1.2},
               "throughput": 812.5}
    (folder.parent / f"{folder.name}_summary.json").write_text(json.dumps(summary))
    return folder


def msame(folder: Path, ids: list[str], logits: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, row in zip(ids, logits):
        (folder / f"{i}_output_0.txt").write_text(" ".join(f"{v:.9g}" for v in row))
    return folder


def mindspore310(folder: Path, ids: list[str], logits: np.ndarray) -> Path:
    """MindSpore 310 app: result_Files/<stem>_0.bin, float16."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, row in zip(ids, logits):
        row.astype("<f2").tofile(folder / f"{i}_0.bin")
    return folder


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def vamp(folder: Path, datalist_paths: list[str], logits: np.ndarray) -> tuple[Path, Path]:
    """vamp: output_{i:06d}.npz (key output_0, softmaxed as the timm builds append) per datalist line."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(softmax(logits)):
        np.savez(folder / f"output_{i:06d}.npz", output_0=row[None].astype(np.float32))
    datalist = folder.parent / "npz_datalist.txt"
    datalist.write_text("".join(f"{p}\n" for p in datalist_paths))
    return folder, datalist


def result_txt(path: Path, image_paths: list[str], logits: np.ndarray) -> Path:
    """vsx / vamp_npz_decode result.txt: 5 lines per image, ids with VastAI's class names."""
    names = imagenet1k().names
    probs = softmax(logits)
    with open(path, "a") as f:
        for image, p in zip(image_paths, probs):
            for k, c in enumerate(np.argsort(-p, kind="stable")[:5]):
                f.write(f"{image}: Relay top-{k} id: {c}, prob: {p[c]:.8f}, class name: {names[c]}\n")
    return path
