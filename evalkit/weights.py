"""Where a model's weights come from: a local file, or a Hugging Face hub checkpoint found as timm finds it.

A timm zoo entry names its checkpoint (``model.hub_id: timm/cspresnext50.ra_in1k``); given neither
``model.onnx`` nor ``model.weights``, evalkit downloads it through huggingface_hub into huggingface_hub's own
cache (``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` are honoured, as for timm's
``validate.py --pretrained``) and loads it with timm's own loading code. ``model.weights=hf-hub:timm/NAME`` names a
checkpoint directly; ``model.revision`` pins a branch, tag or commit. The run records the hub id, the commit the
revision resolved to, the file and its sha256, and the export cache is keyed by them.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Optional

from evalkit.contract import file_sha256
from evalkit.errors import UserError

HUB_PREFIX = "hf-hub:"
#: the files a timm checkpoint on the hub has, in timm's order of preference
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Weights:
    """A resolved weights file and where it came from."""

    path: Path
    sha256: str
    #: ``timm/NAME`` when it came from the hub, else None
    hub_id: Optional[str] = None
    #: the commit the hub revision resolved to
    revision: Optional[str] = None

    def record(self) -> dict[str, Any]:
        """What the run records (run.json ``model.resolved_weights``)."""
        found = {"file": str(self.path), "sha256": self.sha256}
        if self.hub_id:
            found.update(hub_id=self.hub_id, revision=self.revision, file=self.path.name)
        return found


def hub_id(model: Any) -> Optional[str]:
    """The hub checkpoint the model's weights come from: ``model.weights=hf-hub:ID``, else ``model.hub_id`` when no
    weights file is given; None for a local file."""
    weights = model.weights or ""
    if weights.startswith(HUB_PREFIX):
        return weights[len(HUB_PREFIX):]
    return None if weights else model.hub_id


def missing_message(model: Any) -> str:
    """What to supply for a model that has no weights evalkit can fetch (a zoo entry of a source without a hub
    checkpoint): where its source publishes them, and the two keys."""
    where = f"; its source publishes them at {model.weights_url}" if model.weights_url else ""
    return (f"model {model.name} has no weights evalkit can fetch{where}: pass model.onnx=PATH (the model exported "
            f"to ONNX), or model.weights=PATH (a PyTorch state_dict of timm's {model.arch}; "
            "model.weights_keys=order for one whose tensors follow timm's order under other names)")


def resolve(model: Any) -> Weights:
    """The weights file of ``model``: ``model.weights`` (a path or ``hf-hub:ID``), else ``model.hub_id``."""
    hub = hub_id(model)
    if hub:
        try:
            from huggingface_hub import constants
        except ImportError as e:
            raise UserError(f"weights from the Hugging Face hub ({hub}) need huggingface_hub: "
                            "pip install 'evalkit[torch]'") from e
        return _from_hub(hub, model.revision, str(constants.HF_HUB_CACHE), bool(constants.HF_HUB_OFFLINE))
    if not model.weights:
        raise UserError(missing_message(model))
    path = Path(model.weights).expanduser()
    if not path.is_file():
        raise UserError(f"model.weights={model.weights}: no such file")
    return _local(path.resolve(), path.stat().st_mtime_ns, path.stat().st_size)


@lru_cache(maxsize=None)
def _local(path: Path, mtime_ns: int, size: int) -> Weights:
    """A local file, hashed once per content version in this process."""
    return Weights(path=path, sha256=file_sha256(path))


#: set once the hub could not be reached: later look-ups go to the cache only, instead of each waiting for its
#: own time-outs and retries
_UNREACHABLE: list[bool] = []


@lru_cache(maxsize=None)
def _from_hub(repo_id: str, revision: Optional[str], cache: str, offline: bool) -> Weights:
    """Download (or find in the cache) the checkpoint's weights file, as timm's hub loading does; remembered per
    cache folder and offline mode, the huggingface_hub settings that change the answer."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    alternatives = "or pass model.weights=PATH (a PyTorch state_dict), or model.onnx=PATH"
    at = f"{repo_id}" + (f"@{revision}" if revision else "")
    offline = not_found = None
    for filename in HUB_FILES:
        try:
            with _quiet("huggingface_hub"):  # its retries' warnings: the outcome is said below
                path = Path(hf_hub_download(repo_id, filename, revision=revision,
                                            local_files_only=bool(_UNREACHABLE or offline)))
        except LocalEntryNotFoundError as e:  # offline (HF_HUB_OFFLINE=1 or no network) and not in the cache
            offline = e
            if not constants.HF_HUB_OFFLINE:
                _UNREACHABLE.append(True)
            continue
        except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as e:
            raise UserError(f"Hugging Face hub checkpoint {at}: {str(e).splitlines()[0]}; check model.hub_id and "
                            f"model.revision, {alternatives}") from e
        except EntryNotFoundError as e:  # the repository exists but has no such file
            not_found = e
            continue
        # hf_hub_download returns <cache>/models--org--name/snapshots/<commit>/<file>
        return Weights(path=path, sha256=file_sha256(path), hub_id=repo_id, revision=path.parent.name)
    if offline is not None:
        mode = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub could not be reached"
        raise UserError(f"the weights of Hugging Face hub checkpoint {at} are not in the cache {constants.HF_HUB_CACHE} "
                        f"and {mode}: download them once online (HF_HOME or HF_HUB_CACHE move the cache), "
                        f"{alternatives}") from offline
    raise UserError(f"Hugging Face hub checkpoint {at} has none of {', '.join(HUB_FILES)}; "
                    f"{alternatives}") from not_found


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """``logger`` says only errors while in the block."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
