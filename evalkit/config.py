"""Structured config: the schema Hydra validates every composed config against.

The top-level schema lives here; each recipe family's ``Params``, each runtime's and each reader's
``Options`` live beside their code (plug-ins found by entry point) and are registered under their
config group as ``<name>_schema``, so a misspelt key or a wrong type fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import MISSING, DictConfig, OmegaConf

from evalkit.contract import GROUPS, VAL_SET, PrecisionOptions, load, plugins
from evalkit.errors import UserError, at_least


@dataclass
class Reference:
    """A published accuracy, where it comes from and the setting it was measured at."""

    source: str = MISSING
    top1: float = MISSING
    top5: Optional[float] = None
    #: the evaluation setting in the source's words
    setting: str = ""
    #: repository, tag/commit and file (or page) the number is read from
    url: str = ""
    #: recipe parameters the number was measured at; a run with other values is not compared to it
    recipe: dict[str, Any] = field(default_factory=dict)
    #: false where the source attaches a number to this model that is not this model's
    applies: bool = True
    note: str = ""
    #: images the number was measured on (ImageNet val: 50,000); a run on fewer gets a verdict only when its
    #: 95 % confidence interval of top-1 lies entirely below the number
    n: int = 50_000
    #: the test set the number was measured on (a run's ``dataset.test_set``); other sets are not compared to it
    test_set: str = VAL_SET


@dataclass
class ModelConfig:
    name: str = MISSING
    #: architecture name in timm, used to export ONNX from ``weights``
    arch: str = MISSING
    source: str = "timm"
    #: an ONNX file; when null, online runtimes export one from the weights and cache it
    onnx: Optional[str] = None
    #: a PyTorch state_dict file, or ``hf-hub:ORG/NAME`` for a Hugging Face hub checkpoint; when null, ``hub_id``
    weights: Optional[str] = None
    #: the timm checkpoint on the Hugging Face hub (``timm/<arch>.<tag>``) the weights are fetched from when neither
    #: ``onnx`` nor ``weights`` is given, through huggingface_hub's cache (HF_HOME, HF_HUB_OFFLINE, HF_ENDPOINT)
    hub_id: Optional[str] = None
    #: the hub revision (branch, tag or commit hash) to fetch; null = the repository's default branch
    revision: Optional[str] = None
    #: where the model's source publishes its checkpoint (said when evalkit cannot fetch it itself)
    weights_url: str = ""
    #: "names": a state_dict with the architecture's keys; "order": tensors in the
    #: architecture's order under other names (e.g. a port from another codebase)
    weights_keys: str = "names"
    num_classes: int = 1000
    #: whose training the weights are (same architecture, other weights: other numbers)
    weights_origin: str = ""
    #: parameters (millions) and GMACs at the recipe's input size, counted by evalkit on the timm architecture
    params_m: Optional[float] = None
    gmacs: Optional[float] = None
    references: list[Reference] = field(default_factory=list)


@dataclass
class ResultsConfig:
    dir: str = "results"
    #: also store every image's full logits (logits.npy)
    save_logits: bool = False
    #: seconds between saves of the finished images (what resume=true continues from)
    checkpoint_s: float = 5.0
    #: the history index (SQLite) the gate and the comparison API query; "" = none
    history: str = "${results.dir}/history.sqlite"

    def __post_init__(self) -> None:
        at_least("results.checkpoint_s", self.checkpoint_s, 0)


@dataclass
class CacheConfig:
    #: keep the recipe's pixels on disk so later runs with the same recipe and images skip decoding
    enabled: bool = True
    dir: str = "${cache_dir}/tensors"
    #: after every run, remove the least recently used entries of cache_dir until it holds at most this (GB)
    max_gb: Optional[float] = None

    def __post_init__(self) -> None:
        at_least("cache.max_gb", self.max_gb, 0)


@dataclass
class Config:
    model: ModelConfig = MISSING
    preprocess: Any = MISSING
    runtime: Any = MISSING
    dataset: Any = MISSING
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)
    results: ResultsConfig = field(default_factory=ResultsConfig)
    #: decode/resize worker processes; 0 = one per CPU core
    workers: int = 0
    cache: CacheConfig = field(default_factory=CacheConfig)
    progress: bool = True
    #: continue an interrupted run of the same configuration: only the images it had not scored
    resume: bool = False
    #: metric plug-ins (entry points ``evalkit.metrics``) computed on every image, in this order (``real`` adds
    #: nothing unless dataset.real_labels is set)
    metrics: list[str] = field(default_factory=lambda: ["topk", "real"])
    cache_dir: str = "${oc.env:EVALKIT_CACHE,${oc.env:HOME}/.cache/evalkit}"

    def __post_init__(self) -> None:
        at_least("workers", self.workers, 0)
        for name in self.metrics:
            load(GROUPS["metric"], name)  # an unknown name is a UserError listing the valid ones


#: config options that were removed -> what to write instead
RETIRED_OPTIONS = {
    "runtime/trt_fp16": "runtime=trt precision=fp16",
    "runtime/trt_int8": "runtime=trt precision=int8",
}


def retired_option_message(error: str) -> str | None:
    """The advice for a removed option Hydra could not find (``Could not find 'runtime/trt_int8'``), else None."""
    for option, advice in RETIRED_OPTIONS.items():
        if f"'{option}'" in error:
            return (f"{option.replace('/', '=')} was removed: use {advice} "
                    "(reduced precision is a model transform now, the precision config group)")
    return None


def unknown_key_message(full_key: str, valid: Iterable[str]) -> str:
    """Name the schema's closest keys: a schema rejects ``+key`` too, so Hydra's advice to append is wrong."""
    section, _, key = full_key.rpartition(".")
    prefix = f"{section}." if section else ""
    keys = sorted(valid)
    close = difflib.get_close_matches(key, keys, n=3)
    if close:
        return f"unknown key {full_key}; did you mean {' or '.join(prefix + k for k in close)}?"
    return f"unknown key {full_key}; valid keys{f' of {section}' if section else ''}: {', '.join(keys)}"


def _package_dir(name: str) -> str:
    """``${pkg:NAME}``: the folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"Python package {name!r} is not installed; the demo needs it: pip install 'evalkit[demo]'")
    return str(Path(list(spec.submodule_search_locations)[0]))


def _shipped_option(group: str, name: str) -> bool:
    """Whether evalkit's own conf/ has ``<group>/<name>.yaml``."""
    return resources.files("evalkit.conf").joinpath(group, f"{name}.yaml").is_file()


def user_config_dir() -> Path:
    """The user's own config folder, searched before evalkit's conf/ (``$EVALKIT_CONFIG_DIR``, else
    ``$XDG_CONFIG_HOME/evalkit``, else ``~/.config/evalkit``): a ``dataset/imagenet.yaml`` there says where the
    user's ImageNet is; any ``model/``, ``runtime/``... YAML there adds or replaces an option."""
    if os.environ.get("EVALKIT_CONFIG_DIR"):
        return Path(os.environ["EVALKIT_CONFIG_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CONFIG_HOME") or "~/.config").expanduser() / "evalkit"


class UserConfigSearchPath(SearchPathPlugin):
    """Puts ``user_config_dir()`` first on Hydra's config search path, where it exists."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        folder = user_config_dir()
        if folder.is_dir():
            search_path.prepend(provider="evalkit-user", path=f"file://{folder}")


def register() -> None:
    """Put the schemas in Hydra's ConfigStore and the ``pkg`` resolver in OmegaConf (idempotent).

    Every runtime, recipe and reader plug-in (entry points ``evalkit.runtimes``, ``evalkit.recipes``,
    ``evalkit.readers``) gets
    ``<group>/<name>_schema``; one that ships no YAML in conf/ (a third-party plug-in) also becomes the
    option ``<group>/<name>`` itself, so ``runtime=<name>`` selects it with its defaults.
    """
    if not OmegaConf.has_resolver("pkg"):
        OmegaConf.register_new_resolver("pkg", _package_dir)
    Plugins.instance().register(UserConfigSearchPath)
    cs = ConfigStore.instance()
    cs.store(name="evalkit_schema", node=Config)
    cs.store(group="precision", name="precision_schema", node=PrecisionOptions)
    for group, kind, cls in (("preprocess", "recipe", "Params"), ("runtime", "runtime", "Options"),
                             ("dataset", "reader", "Options")):
        for name in plugins(GROUPS[kind]):
            node = OmegaConf.structured(getattr(load(GROUPS[kind], name), cls))
            if group == "preprocess":
                # a model entry sets its own family's keys; with preprocess=<other family> they must merge before
                # follow_overrides() drops them. Unknown keys are still refused, by to_object.
                OmegaConf.set_struct(node, False)
            cs.store(group=group, name=f"{name}_schema", node=node)
            if not _shipped_option(group, name):
                cs.store(group=group, name=name, node=node)


def choices(group: str) -> list[str]:
    """Every option ``group=`` takes, as Hydra finds them (evalkit's conf/, the user's config folder, plug-ins),
    nested ones included (``mmcls/cspresnext50``), the ``*_schema`` entries left out: they are no choice."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    def walk(loader: Any, path: str, prefix: str) -> list[str]:
        found = [prefix + name for name in loader.get_group_options(path) if not name.endswith("_schema")]
        for sub in loader.list_groups(path):
            found += walk(loader, f"{path}/{sub}", f"{prefix}{sub}/")
        return found

    register()
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app: its search path
        return sorted(walk(GlobalHydra.instance().config_loader(), group, ""))
    with initialize_config_module(config_module="evalkit.conf", version_base=None):
        return sorted(walk(GlobalHydra.instance().config_loader(), group, ""))


def unknown_choice_message(path: str) -> str:
    """One line for an option Hydra could not find (``model/cspresnext5``): the closest real choices, else all."""
    parts = path.split("/")
    at = 2 if parts[0] == "hydra" else 1
    group, name = "/".join(parts[:at]), "/".join(parts[at:])
    valid = choices(group)
    close = _closest(name, valid)
    if close:
        return f"unknown {group}={name}; did you mean {' or '.join(close)}?"
    return f"unknown {group}={name}; choices: {', '.join(valid)}"


def _closest(name: str, valid: list[str]) -> list[str]:
    """The choices a mistyped name most likely meant: those it cuts short (cspresnext5), else those it spells out
    (onnxruntime: ort, its letters in order from the first), else difflib's closest."""
    def spelt_out(choice: str) -> bool:
        rest = iter(name)
        return choice[:1] == name[:1] and all(letter in rest for letter in choice)

    for found in ([v for v in valid if v.startswith(name)], [v for v in valid if spelt_out(v)],
                  difflib.get_close_matches(name, valid, n=3)):
        if found:
            return found[:3]
    return []


def compose(overrides: list[str] | None = None) -> Any:
    """The typed config for a list of command-line overrides, as ``python -m evalkit`` composes it.

    For notebooks, tests and the helper commands (export, zoo).
    """
    from hydra import compose as hydra_compose, initialize_config_module

    register()
    overrides = list(overrides or [])
    with initialize_config_module(config_module="evalkit.conf", version_base=None):
        def composed(given: list[str]) -> DictConfig:
            return hydra_compose(config_name="config", overrides=given)

        cfg = composed(overrides)
        follow_overrides(cfg, overrides, composed)
    return to_object(cfg)


def job_compose(hydra_overrides: Iterable[str]) -> Callable[[list[str]], DictConfig]:
    """Inside a running Hydra app: compose another list of overrides as the app composed its own, with the user's
    config folders (``hydra.searchpath`` among ``hydra_overrides``) on the search path."""
    from hydra import compose as hydra_compose

    search = [o for o in hydra_overrides if o.split("=", 1)[0] == "hydra.searchpath"]
    return lambda overrides: hydra_compose(config_name="config", overrides=[*search, *overrides])


def to_object(cfg: Any) -> Config:
    """Resolve and instantiate the dataclasses (runs each ``__post_init__`` validation).

    Keys added with ``+key=value`` that a schema does not have are an error, not dropped.
    """
    sections = ("model", "preprocess", "runtime", "dataset", "precision", "results", "cache")
    for prefix, node in [("", cfg), *((f"{s}.", cfg[s]) for s in sections)]:
        known = {f.name for f in dataclasses.fields(OmegaConf.get_type(node))}
        unknown = sorted(set(node.keys()) - known)
        if unknown:
            raise UserError(unknown_key_message(prefix + unknown[0], known))
    return OmegaConf.to_object(cfg)


def _keys_given(overrides: list[str]) -> list[str]:
    """The keys (and config groups) the overrides set, e.g. ``preprocess``, ``preprocess.crop``, ``model.arch``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return [o.key_or_group for o in OverridesParser.create().parse_overrides(overrides) if not o.is_delete()]


def follow_overrides(cfg: DictConfig, overrides: list[str], compose: Callable[[list[str]], DictConfig]) -> None:
    """What a model entry set for another recipe family or another architecture does not apply: reset it in ``cfg``.

    ``preprocess=F`` where the entry's family is another one keeps only F's schema defaults and the user's
    ``preprocess.*`` keys (each must be one of F's). ``model.arch=X`` other than the entry's makes another model:
    the entry's name, published references and weights are not X's, so only the user's ``model.*`` keys are kept,
    the name is X, and the weights are timm's pretrained X (timm must know X). ``compose`` composes a list of
    overrides; the entry is composed without the user's preprocess and model keys.
    """
    keys = _keys_given(overrides)
    if "preprocess" not in keys and "model.arch" not in keys:
        return
    entry = compose([o for o, key in zip(overrides, keys) if key.split(".")[0] not in ("preprocess", "model")
                     or key == "model"])
    if "preprocess" in keys and entry.preprocess.family != cfg.preprocess.family:
        cfg.preprocess = _given_only(cfg.preprocess, keys, "preprocess")
    if "model.arch" in keys and entry.model.arch != cfg.model.arch:
        cfg.model = _given_only(cfg.model, keys, "model")
        if "model.name" not in keys:
            cfg.model.name = cfg.model.arch
        if not cfg.model.onnx:  # exported from timm's architecture: it must be one
            hub_id = timm_hub_id(cfg.model.arch)
            if not (cfg.model.weights or "model.hub_id" in keys):
                cfg.model.hub_id = hub_id


def _given_only(node: DictConfig, keys: list[str], section: str) -> DictConfig:
    """``node``'s schema defaults with the values of the ``section.*`` keys the user gave (each one the schema's)."""
    schema = OmegaConf.get_type(node)
    known = {f.name for f in dataclasses.fields(schema)}
    fresh = OmegaConf.structured(schema)
    for key in keys:
        name = key[len(section) + 1:].split(".")[0] if key.startswith(section + ".") else None
        if name is None:
            continue
        if name not in known:
            raise UserError(unknown_key_message(f"{section}.{name}", known))
        fresh[name] = node[name]
    return fresh


def timm_hub_id(arch: str) -> Optional[str]:
    """The Hugging Face hub checkpoint of timm's default pretrained ``arch``; a UserError where timm has no such
    architecture (checked before any export)."""
    try:
        import timm
    except ImportError:
        raise UserError(f"model.arch={arch}: evalkit exports timm architectures with timm, which is not installed: "
                        "pip install 'evalkit[torch]' (or give model.onnx=PATH)") from None
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = (f"; did you mean {' or '.join(close)}?" if close
                else " (python -c 'import timm; print(timm.list_models())' lists them)")
        raise UserError(f"model.arch={arch}: timm has no such architecture{hint}")
    pretrained = timm.models.get_pretrained_cfg(arch)
    return (pretrained and pretrained.hf_hub_id) or None


def cache_dir(cfg: Config) -> Path:
    return Path(os.path.expanduser(cfg.cache_dir))


def tensor_cache_dir(cfg: Config) -> Path | None:
    """The prepared-tensor cache folder, or None with ``cache.enabled=false``."""
    return Path(cfg.cache.dir).expanduser() if cfg.cache.enabled else None
