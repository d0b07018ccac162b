"""The reader contract, checked on every reader registered in the ``evalkit.readers`` entry points.

Each built-in reader is shown the same 12 shared photos in its own layout and must return the same samples.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from evalkit import dataset
from evalkit.classes import imagenet1k
from evalkit.contract import GROUPS, DatasetOptions, load, plugins

from .test_runtimes import HEAVY, python

READERS = sorted(plugins(GROUPS["reader"]))


def photos(sample_root: Path) -> list[Path]:
    return sorted(sample_root.glob("*/*.JPEG"))[:12]


def imagefolder_layout(sample_root: Path, tmp_path: Path) -> dict:
    return {"root": str(sample_root)}


def labelfile_layout(sample_root: Path, tmp_path: Path) -> dict:
    """A flat folder and Caffe-style lines with class indices."""
    flat = tmp_path / "flat"
    flat.mkdir()
    lines = []
    for p in photos(sample_root):
        shutil.copy(p, flat / p.name)
        lines.append(f"{p.name} {imagenet1k().index[p.parent.name]}\n")
    (tmp_path / "val.txt").write_text("".join(lines))
    return {"root": str(flat), "labels": str(tmp_path / "val.txt")}


def files_layout(sample_root: Path, tmp_path: Path) -> dict:
    return {"files": [f"{p} {p.parent.name}" for p in photos(sample_root)]}


#: reader -> its dataset keys for the shared photos; a reader from another distribution brings its own test
LAYOUTS = {"imagefolder": imagefolder_layout, "labelfile": labelfile_layout, "files": files_layout}


def test_the_builtins_are_registered():
    assert set(LAYOUTS) <= set(READERS)


@pytest.mark.parametrize("name", READERS)
def test_options_extend_the_common_dataset_keys_and_default_to_the_layout(name):
    module = load(GROUPS["reader"], name)
    assert issubclass(module.Options, DatasetOptions) and dataclasses.is_dataclass(module.Options)
    options = module.Options()
    assert options.layout == name and options.name == name
    assert callable(module.read)


@pytest.mark.parametrize("name", READERS)
def test_module_imports_lazily_and_its_schema_is_registered(name):
    out = python(f"""
        import sys
        from evalkit.contract import GROUPS, load
        load(GROUPS["reader"], {name!r}).Options()
        from evalkit.config import register
        from hydra.core.config_store import ConfigStore
        register()
        assert "{name}_schema.yaml" in ConfigStore.instance().list("dataset")
        print([m for m in {HEAVY!r} if m in sys.modules])
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", READERS)
def test_every_layout_of_the_same_photos_gives_the_same_samples(name, sample_root, tmp_path):
    if name not in LAYOUTS:
        pytest.skip(f"reader {name} comes from another distribution; its own tests lay out its data")
    keys = LAYOUTS[name](sample_root, tmp_path)
    samples = dataset.load(load(GROUPS["reader"], name).Options(limit=12, **keys))
    expected = [(p.stem, imagenet1k().index[p.parent.name]) for p in photos(sample_root)]
    assert [(s.id, s.label) for s in samples] == expected
    assert all(s.path.is_file() and s.path.stem == s.id for s in samples)
