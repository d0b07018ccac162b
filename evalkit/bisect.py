"""Which layers an int8 model should keep in fp32 to stay within ``target`` points of fp32 top-1
(``python -m evalkit.bisect``).

    python -m evalkit.bisect precision=int8 precision.calibration.root=CAL dataset=imagefolder dataset.root=val \\
        target=0.5 subset=100

Sensitivity is measured one layer at a time, "only that layer left in fp32": one variant per quantized
Conv/Gemm/MatMul, the rest quantized, as ModelOpt's and NNCF's accuracy-aware searches do. The opposite
("only that layer quantized") measures each layer in a network that is not the one shipped, and misses
how errors compound. The measure is top-1 on a held-back subset of the dataset, disjoint from the
calibration images and from the images the result is finally evaluated on (the rest of the dataset), so
the search does not fit its own score; subsets are small, so top-1 moves in steps and ties, and the
logits' SNR against fp32 on the same subset breaks the ties. Then the most sensitive layers join the
exclude set one by one (greedy, each step measured) until top-1 on the subset is within ``target`` of fp32.
A model already within ``target`` needs no search: none is made. One image is 100/N points of top-1 on a
subset of N: a finer target is warned about, as is a ranking that rests on one image.

Variants are cheap: graph surgery on the one Q/DQ model (``leave_fp32``) instead of re-quantizing. It
reproduces ``precision.exclude=[X]`` exactly: the quantizer keeps an activation's Q/DQ, for all its
consumers, as long as one quantized op reads it, and gives X its float weight; the surgery does the same,
taking the fp32 weight from the source model. Every measured variant is checkpointed as JSON under the
cache dir, keyed by the Q/DQ model, the fp32 source, the subset and the recipe: an interrupted search
resumes and a rerun is free.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.contract import PreparedSource, file_sha256, samples_fingerprint
from evalkit.commands import number, own_keys
from evalkit.diverge import open_run, session
from evalkit.errors import UserError

#: the ops the int8 transform quantizes (evalkit.transforms.int8.QUANTIZED_OPS)
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
KEYS = ("target", "subset")
USAGE = "python -m evalkit.bisect [overrides] precision=int8 target=0.5 [subset=100]"
#: ``--help``: Hydra's grammar would reject the flag, so the command answers it before composing
HELP = f"""usage: {USAGE}
{__doc__}
arguments (key=value, no dashes):
  overrides              as for python -m evalkit (model=, precision=, dataset=, ...; see python -m evalkit --help)
  target=0.5             points of top-1 below fp32 the int8 model may lose
  subset=100             images held back to measure each variant on"""
BATCH = 32


@dataclass
class Search:
    """What the search found; ``sensitivity``: layer -> top1 and logits SNR on the subset with only it in fp32."""

    exclude: list[str]
    fp32_top1: float
    int8_top1: float
    top1: float
    sensitivity: dict[str, dict[str, float]] = field(default_factory=dict)
    #: the subset's size: one image is 100 / images points of top-1
    images: int = 0

    @property
    def within_target_already(self) -> bool:
        """The int8 model met the target as it was: no layer was measured."""
        return not self.sensitivity


def resolution_warning(images: int, target: float) -> str | None:
    """Top-1 on ``images`` moves in steps of one image: a target finer than one step cannot be told from noise."""
    step = 100 / images
    if target <= 0 or step <= target:
        return None
    enough = math.ceil(100 / target)
    return (f"one image is {step:.2f} points on {images} images, coarser than the target {target:g}: use at least "
            f"{enough} images (subset={enough})")


def quantized_layers(model: Any) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes that read a DequantizeLinear output, in graph order."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and any(i in dq for i in n.input)]


def leave_fp32(qdq: Any, source: Any, exclude: set[str]) -> Any:
    """A copy of the Q/DQ model with the ``exclude`` nodes in fp32, as re-quantizing with them excluded makes it.

    An excluded node gets the source's float weight; an activation loses its Q/DQ (for every consumer)
    once no quantized node that stays quantized reads it.
    """
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph = model.graph
    nodes = {n.name: n for n in graph.node}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n)
    quantized = set(quantized_layers(model))
    source_nodes = {n.name: n for n in source.graph.node}
    source_weights = {i.name: i for i in source.graph.initializer}
    have = {i.name for i in graph.initializer}
    for name in exclude:
        if name not in source_nodes:
            raise UserError(f"node {name} is not in the fp32 model: the Q/DQ model was not made from it")
        node = nodes[name]
        for k, tensor in enumerate(node.input):
            dq = producer.get(tensor)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":  # a weight
                weight = source_nodes[name].input[k]
                node.input[k] = weight
                if weight not in have:
                    graph.initializer.append(source_weights[weight])
                    have.add(weight)
            elif all(c.name in exclude or c.name not in quantized for c in consumers[tensor]):
                for c in consumers[tensor]:
                    for j, i in enumerate(c.input):
                        if i == tensor:
                            c.input[j] = q.input[0]
    _prune(graph)
    return model


def _prune(graph: Any) -> None:
    """Drop the nodes no output needs any more (orphaned Q/DQ), then the unused initializers."""
    used = {o.name for o in graph.output}
    kept = []
    for n in reversed(graph.node):
        if any(o in used for o in n.output):
            kept.append(n)
            used.update(n.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    weights = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(weights)


def logits(model: Any, source: PreparedSource, batch: int = BATCH) -> np.ndarray:
    """The model's first output for every image of ``source`` (Q/DQ simulated in fp32)."""
    s = session(model, [], quantized=True)
    name = s.get_inputs()[0].name
    n = len(source.samples)
    return np.concatenate([s.run(None, {name: source.batch(lo, min(lo + batch, n))})[0]
                           for lo in range(0, n, batch)])


def top1(scores: np.ndarray, labels: np.ndarray, num_classes: int = 1000) -> float:
    """Top-1 in percent; a 1001-class head's background (index 0) is left out."""
    return float((scores[:, scores.shape[1] - num_classes:].argmax(1) == labels).mean() * 100)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    err = float(np.sum((test.astype(np.float64) - reference) ** 2))
    return 10 * math.log10(float(np.sum(reference.astype(np.float64) ** 2)) / err) if err > 0 else math.inf


def macs(source: Any, x: np.ndarray, layers: list[str]) -> dict[str, int]:
    """Multiply-accumulates per image of each layer, from its weight and its output shape.

    The output shapes come from one inference: shape inference cannot size convolutions behind run-time
    'same' padding (the tf_ models).
    """
    nodes = {n.name: n for n in source.graph.node}
    weights = {i.name: i for i in source.graph.initializer}
    outputs = [nodes[name].output[0] for name in layers]
    s = session(source, outputs, quantized=False)
    shapes = dict(zip(outputs, (v.shape for v in s.run(outputs, {s.get_inputs()[0].name: x[:1]}))))
    found = {}
    for name in layers:
        node = nodes[name]
        weight = int(np.prod(weights[node.input[1]].dims))
        out = shapes[node.output[0]]
        channels = out[1] if node.op_type == "Conv" else out[-1]
        found[name] = int(np.prod(out[1:])) * weight // channels
    return found


class _Checkpoint:
    """Measured variants (json of the sorted exclude list -> top1, snr_db), saved after each one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.measured: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, exclude: list[str], measure: Any) -> dict[str, float]:
        key = json.dumps(sorted(exclude))
        if key not in self.measured:
            self.measured[key] = measure()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".tmp-{os.getpid()}-{self.path.name}")
            tmp.write_text(json.dumps(self.measured, indent=1))
            os.replace(tmp, self.path)
        return self.measured[key]


def checkpoint_path(cache_dir: Path, qdq: Path, source: Path, subset: PreparedSource, recipe_fingerprint: str
                    ) -> Path:
    """Where the search of this Q/DQ model on this subset keeps what it measured."""
    key = hashlib.sha256(json.dumps([file_sha256(source), samples_fingerprint(subset.samples),
                                     recipe_fingerprint]).encode()).hexdigest()[:16]
    return cache_dir / "bisect" / f"{file_sha256(qdq)[:16]}-{key}.json"


def search(qdq: Path, source: Path, subset: PreparedSource, target: float, checkpoint: Path,
           progress: bool = True, num_classes: int = 1000) -> Search:
    """Measure every quantized layer of ``qdq`` left alone in fp32 on ``subset``, then exclude the most
    sensitive ones, greedily, until top-1 on ``subset`` is within ``target`` points of ``source`` (fp32)."""
    import onnx

    from evalkit.progress import bar

    qmodel, fmodel = onnx.load(str(qdq)), onnx.load(str(source))
    labels = np.array([s.label for s in subset.samples])
    reference = logits(fmodel, subset)
    fp32_top1 = top1(reference, labels, num_classes)
    saved = _Checkpoint(checkpoint)

    def measure(exclude: list[str]) -> dict[str, float]:
        def run() -> dict[str, float]:
            scores = logits(leave_fp32(qmodel, fmodel, set(exclude)), subset)
            return {"top1": top1(scores, labels, num_classes), "snr_db": snr_db(reference, scores)}
        return saved.get(exclude, run)

    layers = quantized_layers(qmodel)
    int8_top1 = measure([])["top1"]
    if int8_top1 >= fp32_top1 - target:
        return Search([], fp32_top1, int8_top1, int8_top1, {}, len(labels))
    sensitivity = {layer: measure([layer])
                   for layer in bar(layers, desc="layers", unit="variant", disable=not progress)}
    order = sorted(layers, key=lambda layer: (-sensitivity[layer]["top1"], -sensitivity[layer]["snr_db"]))
    exclude: list[str] = []
    reached = int8_top1
    while reached < fp32_top1 - target and len(exclude) < len(order):
        exclude.append(order[len(exclude)])
        reached = measure(exclude)["top1"]
    return Search(exclude, fp32_top1, int8_top1, reached, sensitivity, len(labels))


def describe(name: str, measured: dict[str, float], found: Search) -> str:
    """A layer's top-1 with only it in fp32, its logits' SNR (the tie-break), and what a top-1 above fp32's is."""
    above = round((measured["top1"] - found.fp32_top1) * found.images / 100)
    note = ("" if above <= 0 else f", {above} images above fp32" if above > 1 else
            ", one image above fp32: within one image, noise")
    return f"{name} {measured['top1']:.2f} ({measured['snr_db']:.1f} dB{note})"


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import exit_on_user_error, print_help_if_asked
    from evalkit.config import cache_dir, compose
    from evalkit.precision import calibration_subset

    args = list(sys.argv[1:] if argv is None else argv)
    print_help_if_asked(args, HELP)

    def run() -> None:
        import onnx

        own, overrides = own_keys(args, KEYS)
        target, size = number(own, "target", 0.5), number(own, "subset", 100, int)
        if target < 0:
            raise UserError(f"target={target} is out of range: must be >= 0 (points of top-1 below fp32)")
        if size < 1:
            raise UserError(f"subset={size} is out of range: must be >= 1")
        cfg = compose(overrides)
        if cfg.precision.name != "int8":
            raise UserError(f"precision={cfg.precision.name}: bisect searches int8 Q/DQ models; usage: {USAGE}")
        recipe, samples, context, fp32 = open_run(cfg)
        qdq = context.onnx_file()
        source = fp32()
        # the calibration images by content: those drawn from the dataset, and copies of its images given apart
        digests = set(context.onnx_file.calibration_digests)
        calibrated = {s.id for s in samples if hashlib.sha256(s.read()).digest() in digests}
        pool = [s for s in samples if s.id not in calibrated]
        held = calibration_subset(pool, size)
        kept = {s.id for s in held}
        rest = [s for s in pool if s.id not in kept]
        if not rest:
            raise UserError(f"subset={size} leaves none of the {len(pool)} images that are not calibration images "
                            "to evaluate on; give a smaller subset or more images")
        print(f"model {cfg.model.name} int8 ({qdq.name}): subset of {len(held)} images, evaluation on the other "
              f"{len(rest)}" + (f", {len(calibrated)} calibration images left out" if calibrated else ""))
        coarse = resolution_warning(len(held), target)
        if coarse:
            print(f"WARNING: {coarse}", file=sys.stderr)
        with context.prepared(held) as subset:
            found = search(qdq, source, subset, target, checkpoint_path(cache_dir(cfg), qdq, source, subset,
                                                                        recipe.fingerprint), cfg.progress,
                           cfg.model.num_classes)
            x = subset.batch(0, 1)
        exclude = shlex.quote(f"precision.exclude=[{','.join([*cfg.precision.exclude, *found.exclude])}]")
        if found.within_target_already:
            print(f"int8 is already within {target:g} of fp32 on the subset ({len(held)}): top-1 fp32 "
                  f"{found.fp32_top1:.2f}, int8 {found.int8_top1:.2f}; no layer was measured, none needs to stay fp32")
            print(exclude)
            return
        qmodel, fmodel = onnx.load(str(qdq)), onnx.load(str(source))
        layer_macs = macs(fmodel, x, quantized_layers(qmodel))
        share = sum(layer_macs[n] for n in found.exclude) / sum(layer_macs.values()) * 100
        labels = np.array([s.label for s in rest])
        with context.prepared(rest) as evaluation:
            tops = [top1(logits(m, evaluation), labels, cfg.model.num_classes)
                    for m in (fmodel, qmodel, leave_fp32(qmodel, fmodel, set(found.exclude)))]
        worst = sorted(found.sensitivity.items(), key=lambda kv: (-kv[1]["top1"], -kv[1]["snr_db"]))[:5]
        print("most sensitive layers (top-1 on the subset with only that layer in fp32; the logits' SNR against fp32 "
              "breaks ties): " + "; ".join(describe(name, v, found) for name, v in worst))
        print(f"top-1 on the subset ({len(held)}): fp32 {found.fp32_top1:.2f}, int8 {found.int8_top1:.2f}, "
              f"with the exclusions {found.top1:.2f} (target: within {target:g} of fp32)")
        print(f"top-1 on the evaluation set ({len(rest)}): fp32 {tops[0]:.2f}, int8 {tops[1]:.2f}, "
              f"with the exclusions {tops[2]:.2f}")
        print(f"{len(found.exclude)} of {len(layer_macs)} quantized layers stay fp32: {share:.1f} % of their MACs")
        print(exclude)

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
