"""Webdataset-style tar shards: ``<key>.jpg`` beside ``<key>.cls`` (class index) or ``<key>.json``.

Images are read in place: each sample is its member's offset and size inside the uncompressed shard, so
the shards need no unpacking and the decode workers share them like files. Only the headers and the
label members are read here; a shard that is cut short or damaged is refused rather than read in part.
Keys and fields follow webdataset (``img.v2.jpg`` is field ``v2.jpg`` of key ``img``); a member that could be
an image or a label but pairs with nothing is skipped and named (``warn_skipped``), never dropped unseen.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from evalkit.contract import Classes, DatasetOptions, Sample, warn_skipped
from evalkit.errors import UserError


@dataclass
class Options(DatasetOptions):
    layout: str = "tar"
    #: the shards: a path with webdataset brace ranges ``{000000..000063}`` or lists ``{a,b}``, or a glob ``*``
    shards: Optional[str] = None


IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
#: a label field's extensions, the first found wins
LABEL_EXTENSIONS = ("cls", "json")
#: the first bytes of compressed files, which cannot be read in place
COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
EXAMPLE = "'dataset.shards=\"/data/imagenet-val-{000000..000063}.tar\"'"
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")
#: a tar ends with two zero blocks of 512 bytes (then zero padding)
_END_OF_ARCHIVE = 1024


def expand(pattern: str) -> list[str]:
    """The paths a pattern names, in order: ``{000..063}`` counts with the zero padding of its start,
    ``{a,b}`` lists; several braces multiply."""
    brace = _BRACE.search(pattern)
    if brace is None:
        return [pattern]
    numbers = _RANGE.fullmatch(brace.group(1))
    if numbers:
        lo, hi = numbers.groups()
        choices = [str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1)]
    else:
        choices = brace.group(1).split(",")
    head, tail = pattern[:brace.start()], pattern[brace.end():]
    return [path for choice in choices for path in expand(head + choice + tail)]


def shard_files(pattern: str) -> list[Path]:
    """The shards a pattern names; every one of them must exist (a missing shard would drop its images)."""
    paths = expand(os.path.expanduser(pattern))
    found = [Path(p) for path in paths for p in (sorted(glob.glob(path)) if _is_glob(path) else [path])
             if os.path.isfile(p)]
    if not found:
        raise UserError(f"dataset.shards={pattern} matches no file; give the shards' path, e.g. {EXAMPLE}")
    missing = [p for p in paths if not _is_glob(p) and not os.path.isfile(p)]
    if missing:
        raise UserError(f"{missing[0]}: no such shard ({len(missing)} of the {len(paths)} files "
                        f"dataset.shards={pattern} names are missing); restore them or fix the pattern")
    return found


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _label(shard: Path, member: str, text: bytes, count: int) -> int:
    """The class index a ``.cls`` (the index as text) or ``.json`` (``label`` or ``cls``) member holds."""
    fix = ".cls holds the class index as text, .json an object with \"label\" or \"cls\""
    try:
        value = json.loads(text) if member.lower().endswith(".json") else int(text.decode().strip())
        if isinstance(value, dict):
            value = value["label"] if "label" in value else value["cls"]
    except (UnicodeDecodeError, ValueError, KeyError, RecursionError) as e:  # RecursionError: absurdly nested
        shown = text[:80].decode(errors="replace")
        raise UserError(f"{shard}: member {member}: cannot read a label from {shown!r}: {fix}") from e
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"{shard}: member {member}: label {value!r} is not a class index: {fix}")
    if not 0 <= value < count:
        raise UserError(f"{shard}: member {member}: label {value} is out of range 0..{count - 1} "
                        "(labels are 0-based sorted-wnid indices)")
    return value


def _compression(shard: Path) -> Optional[str]:
    """The compression a shard that tarfile cannot read shows in its first bytes, if any."""
    with open(shard, "rb") as f:
        magic = f.read(6)
    return next((kind for m, kind in COMPRESSED.items() if magic.startswith(m)), None)


def _ends_cleanly(shard: Path, end: int) -> bool:
    """Whether only zeros follow the last header tarfile read, two blocks at least: the end-of-archive marker.

    Anything else is a header tarfile could not read (a damaged one, or a second archive appended).
    """
    zeros = 0
    with open(shard, "rb") as f:
        f.seek(end)
        for block in iter(lambda: f.read(1 << 16), b""):
            if block.strip(b"\0"):
                return False
            zeros += len(block)
    return zeros >= _END_OF_ARCHIVE


def _kind(extension: str) -> str:
    """What a field is by its last extension, as webdataset's decoders tell (``v2.jpg`` is a jpg): image, cls, json
    or other."""
    last = extension.rpartition(".")[2].lower()
    return "image" if last in IMAGE_EXTENSIONS else last if last in LABEL_EXTENSIONS else "other"


def _members(shard: Path) -> tuple[dict[str, dict[str, tarfile.TarInfo]], dict[str, bytes], dict[str, str]]:
    """The shard's files grouped by key, then by extension (lower case); the label members' bytes; the members
    that could be a sample's image or label but are no sample's field (member -> why, for ``warn_skipped``).

    A key is the member path up to the first dot of its base name, the extension all after it (webdataset's
    ``base_plus_ext``: ``img.v2.jpg`` is key ``img``, field ``v2.jpg``; a base name starting with a dot has no key).
    Like webdataset, only regular files are fields. A shard cut short or damaged (tarfile's ReadError, or no
    end-of-archive blocks: tarfile stops quietly at a missing or damaged header after the first) is refused,
    naming the last member read.
    """
    groups: dict[str, dict[str, tarfile.TarInfo]] = {}
    labels: dict[str, bytes] = {}
    skipped: dict[str, str] = {}
    last = "at its start"
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for m in tar:  # tarfile checks each member's data is all there before reading the next header
                last = f"in or after member {m.name}"
                folder, _, base = m.name.rpartition("/")
                stem, dot, ext = base.partition(".")
                if not dot or _kind(ext) == "other" or m.isdir():
                    continue  # folders, metadata, captions: no image or label of a sample
                if not m.isfile() or not stem:
                    why = "a link, not a file" if not m.isfile() else "no key before the first dot of its name"
                    skipped[f"{shard} member {m.name}"] = why
                    continue
                fields = groups.setdefault(f"{folder}/{stem}" if folder else stem, {})
                ext = ext.lower()
                if ext in fields:
                    raise UserError(f"{shard}: members {fields[ext].name} and {m.name} have the same key and "
                                    "extension; each sample needs its own key: write the shard without the copy")
                fields[ext] = m
                if _kind(ext) in LABEL_EXTENSIONS:
                    labels[m.name] = tar.extractfile(m).read()
            end = tar.offset
        if not _ends_cleanly(shard, end):
            raise tarfile.ReadError("no clean end of archive after it")
    except tarfile.ReadError as e:
        kind = _compression(shard)
        if kind:
            raise UserError(f"{shard}: is {kind}-compressed; images are read in place from uncompressed shards: "
                            "decompress it (e.g. gunzip) and point dataset.shards at the .tar files") from e
        raise UserError(f"{shard}: the archive is cut short or damaged {last} ({e}); write the shard again") from e
    except OSError as e:
        raise UserError(f"cannot read {shard}: {e.strerror or e}") from e
    return groups, labels, skipped


def read(options: Options, classes: Classes) -> list[Sample]:
    if not options.shards:
        raise UserError(f"dataset {options.name} needs dataset.shards=PATTERN, e.g. {EXAMPLE}")
    samples: list[Sample] = []
    skipped: dict[str, str] = {}
    seen: dict[str, str] = {}  # id -> where, for duplicates across shards
    for shard in shard_files(options.shards):
        groups, labels, skipped_here = _members(shard)
        skipped.update(skipped_here)
        for key, fields in groups.items():
            images = [m for e, m in fields.items() if _kind(e) == "image"]
            label_member = _label_member(shard, key, fields)
            if not images:
                raise UserError(f"{shard}: member {label_member.name} labels key {key}, which has no image "
                                f"({', '.join('.' + e for e in IMAGE_EXTENSIONS)}); add the image or remove the label")
            if len(images) > 1:
                raise UserError(f"{shard}: members {images[0].name} and {images[1].name} are two images of key {key}; "
                                "keep one image per key")
            image = images[0]
            if label_member is None:
                raise UserError(f"{shard}: member {image.name} has no label: add {key}.cls (the class index as text) "
                                f"or {key}.json ({{\"label\": index}})")
            where = f"{shard} member {image.name}"
            sample_id = key.rpartition("/")[2]
            if sample_id in seen:
                raise UserError(f"two images share the id {sample_id!r}: {seen[sample_id]} and {where}; "
                                "ids are the keys' base names and must be unique")
            seen[sample_id] = where
            label = _label(shard, label_member.name, labels[label_member.name], len(classes))
            samples.append(Sample(sample_id, shard, label, offset=image.offset_data, size=image.size))
    warn_skipped(skipped)
    return samples


def _label_member(shard: Path, key: str, fields: dict[str, tarfile.TarInfo]) -> Optional[tarfile.TarInfo]:
    """The key's label: its .cls, else its .json (dotted ones too: ``v2.cls``); two of a kind are ambiguous."""
    for kind in LABEL_EXTENSIONS:
        found = [m for e, m in fields.items() if _kind(e) == kind]
        if len(found) > 1:
            raise UserError(f"{shard}: members {found[0].name} and {found[1].name} are two labels of key {key}; "
                            "keep one label per key")
        if found:
            return found[0]
    return None
