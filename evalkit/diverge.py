"""Where a transformed model parts from its reference, layer by layer (``python -m evalkit.diverge``).

    python -m evalkit.diverge precision=int8 precision.calibration.root=CAL dataset=imagefolder dataset.root=val
    python -m evalkit.diverge model.onnx=vendor.onnx reference=ours.onnx images=32 threshold=25 output=DIR

Both models run on the same images, prepared by the run's recipe, with every intermediate tensor exposed
as a graph output (on an in-memory copy); tensors are matched by name, which a Q/DQ model keeps for the
float tensors its ops produce (its DequantizeLinear outputs are the quantized views, not compared) and
the fp16 transform keeps too. Q/DQ models run with ``session.disable_quant_qdq``: quantization simulated
in fp32, as the ort runtime runs them. Only feature maps are compared: float tensors with a batch
dimension that depend on the input and are not constant in the reference; shape arithmetic (the tf_
models compute their 'same' padding at run time) is dropped, and the output says how much and why.

Per tensor, over all images: cosine similarity, SNR (10·log10(Σref²/Σerr²), infinite where identical),
max abs error and relative L2 of the accumulated error (the transformed model against the reference), and
for a Q/DQ model ``qdq_snr_db``, the error of that tensor's own QuantizeLinear/DequantizeLinear pair alone
(the tensor against its dequantized view in the same run, what ONNX Runtime's qdq_loss_debug reports): the
first says where the damage shows, the second which quantizer causes it. The model input's own Q/DQ pair
is a row too. All from sums accumulated batch by batch in float64, so neither the result
nor the memory depends on how many images are compared. Writes ``layers.csv``, ``snr.png`` and
``unmatched.txt`` to ``output`` (default ``<results.dir>/diverge-<model>-<precision>-<time>``).
"""

from __future__ import annotations

import math
import resource
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from evalkit.contract import GROUPS, PreparedSource, plugins, safe_name
from evalkit.errors import UserError

#: images per inference: every exposed tensor of a batch is held at once
BATCH = 8
#: the command's own keys (the rest are overrides for compose)
KEYS = ("images", "threshold", "reference", "output")
USAGE = ("python -m evalkit.diverge [overrides] [precision=int8|fp16] [reference=fp32|PATH.onnx] [images=64] "
         "[threshold=20] [output=DIR]")
#: ``--help``: Hydra's grammar would reject the flag, so the command answers it before composing
HELP = f"""usage: {USAGE}
{__doc__}
arguments (key=value, no dashes):
  overrides              as for python -m evalkit (model=, precision=, dataset=, ...; see python -m evalkit --help)
  reference=fp32|PATH    what the model is compared with: its own fp32 export (default) or an ONNX file
  images=64              how many images of the dataset both models run on
  threshold=20           the SNR (dB) below which a layer counts as divergent
  output=DIR             where layers.csv, snr.png and unmatched.txt go (default: under results.dir)"""
EXAMPLES = 5

# why a tensor is not compared
NOT_INPUT = "does not depend on the input (weights, constants)"
QUANTIZED_VIEW = "DequantizeLinear output (a quantized view)"
NOT_FLOAT = "not float"
SHAPE = "shape arithmetic (rank < 2 or no batch dimension)"
EMPTY = "zero-sized"
CONSTANT = "constant in the reference"


@dataclass
class Graph:
    """One model's tensors: the feature-map candidates (name -> producing op, graph order) and the rest."""

    model: Any
    candidates: dict[str, str]
    dropped: dict[str, str]
    #: tensor -> the output of the DequantizeLinear that re-reads its QuantizeLinear (its quantized view)
    views: dict[str, str]

    @property
    def quantized(self) -> bool:
        return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in self.model.graph.node)


@dataclass
class Comparison:
    """Per-layer figures in graph order, and what was not compared: reason -> names; side -> names."""

    table: pd.DataFrame
    dropped: dict[str, list[str]]
    unmatched: dict[str, list[str]]
    images: int

    def first_divergent(self, threshold: float) -> str | None:
        below = self.table[self.table["snr_db"] < threshold]
        return None if below.empty else str(below.iloc[0]["tensor"])


def graph(path: Path) -> Graph:
    """Load ``path`` and sort its node outputs into candidates and dropped tensors (types from shape inference)."""
    import onnx

    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    initializers = {i.name for i in model.graph.initializer}
    live = {i.name for i in model.graph.input if i.name not in initializers}
    candidates: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for node in model.graph.node:
        depends = any(i in live for i in node.input)
        for name in filter(None, node.output):
            t = types.get(name)
            if not depends:
                dropped[name] = NOT_INPUT
            elif node.op_type == "DequantizeLinear":
                dropped[name] = QUANTIZED_VIEW
            elif t is not None and t.elem_type and t.elem_type not in floats:
                dropped[name] = NOT_FLOAT
            elif t is not None and t.HasField("shape") and len(t.shape.dim) < 2:
                dropped[name] = SHAPE
            else:
                candidates[name] = node.op_type
            if depends:
                live.add(name)
    quantizes = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    views = {quantizes[n.input[0]]: n.output[0] for n in model.graph.node
             if n.op_type == "DequantizeLinear" and n.input[0] in quantizes and quantizes[n.input[0]] in live}
    return Graph(model, candidates, dropped, views)


def session(model: Any, outputs: list[str], quantized: bool) -> Any:
    """An ONNX Runtime CPU session of ``model`` returning ``outputs`` too; Q/DQ simulated in fp32."""
    import onnx
    import onnxruntime

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    have = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(onnx.ValueInfoProto(name=n) for n in outputs if n not in have)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if quantized:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return onnxruntime.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])


class _Sums:
    """Σref², Σerr², Σref·test, Σtest², max|err| and the reference's range of one tensor, in float64."""

    def __init__(self) -> None:
        self.rr = self.ee = self.rt = self.tt = self.max_err = 0.0
        self.lo, self.hi = math.inf, -math.inf

    def add(self, ref: np.ndarray, test: np.ndarray) -> None:
        r = ref.astype(np.float64).ravel()
        t = test.astype(np.float64).ravel()
        e = t - r
        self.rr += float(r @ r)
        self.ee += float(e @ e)
        self.rt += float(r @ t)
        self.tt += float(t @ t)
        self.max_err = max(self.max_err, float(np.abs(e).max()))
        self.lo, self.hi = min(self.lo, float(r.min())), max(self.hi, float(r.max()))

    def figures(self) -> dict[str, float]:
        return {"cosine": self.rt / math.sqrt(self.rr * self.tt) if self.rr * self.tt > 0 else math.nan,
                "snr_db": 10 * math.log10(self.rr / self.ee) if self.ee > 0 else math.inf,
                "max_abs_err": self.max_err, "rel_l2": math.sqrt(self.ee / self.rr)}


def compare(reference: Path, test: Path, source: PreparedSource, batch: int = BATCH, progress: bool = True
            ) -> Comparison:
    """Run both models on every image of ``source`` and compare their common feature maps."""
    from evalkit.progress import bar

    ref, tst = graph(reference), graph(test)
    names = [n for n in ref.candidates if n in tst.candidates]
    if not names:
        raise UserError(f"{test} and the reference {reference} share no tensor name: they cannot be compared "
                        "layer by layer (a reference must be the same network with the same tensor names)")
    unmatched = {"reference only": [n for n in ref.candidates if n not in tst.candidates],
                 "model only": [n for n in tst.candidates if n not in ref.candidates], "shapes differ": []}
    dropped_by_name = {**tst.dropped, **ref.dropped}
    inputs = [i.name for i in tst.model.graph.input if i.name in tst.views]
    names = inputs + names  # the model input's own Q/DQ pair first
    views = {n: tst.views[n] for n in names if n in tst.views}
    sessions = [session(ref.model, [n for n in names if n not in inputs], ref.quantized),
                session(tst.model, [n for n in names if n not in inputs] + list(views.values()), tst.quantized)]
    sums: dict[str, _Sums] = {}
    local: dict[str, _Sums] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    n = len(source.samples)
    for lo in bar(range(0, n, batch), unit="batch", disable=not progress):
        x = source.batch(lo, min(lo + batch, n))
        got = []
        for s in sessions:
            wanted = [o.name for o in s.get_outputs()]
            got.append({**dict(zip(wanted, s.run(wanted, {s.get_inputs()[0].name: x}))),
                        **{i: x for i in inputs}})
        for name, view in views.items():
            local.setdefault(name, _Sums()).add(got[1][name], got[1][view])
        for name in names:
            r, t = got[0][name], got[1][name]
            if lo == 0:
                if r.ndim < 2 or r.shape[0] != len(x):
                    dropped_by_name[name] = SHAPE
                elif r.size == 0:
                    dropped_by_name[name] = EMPTY
                elif r.shape != t.shape:
                    unmatched["shapes differ"].append(f"{name} ({r.shape[1:]} vs {t.shape[1:]})")
                else:
                    sums[name], shapes[name] = _Sums(), r.shape[1:]
            if name in sums:
                sums[name].add(r, t)
    rows = []
    for name, s in sums.items():
        if s.lo == s.hi:
            dropped_by_name[name] = CONSTANT
            continue
        rows.append({"tensor": name, "op": ref.candidates.get(name, "input"), "shape": "x".join(map(str, shapes[name])),
                     **s.figures(), "qdq_snr_db": local[name].figures()["snr_db"] if name in local else math.nan})
    if not rows:
        raise UserError(f"{test} and the reference {reference} share no feature map (only shape arithmetic or "
                        "constants): they cannot be compared layer by layer")
    dropped: dict[str, list[str]] = defaultdict(list)
    for name, reason in dropped_by_name.items():
        dropped[reason].append(name)
    return Comparison(pd.DataFrame(rows, columns=["tensor", "op", "shape", "cosine", "snr_db", "max_abs_err",
                                                  "rel_l2", "qdq_snr_db"]), dict(dropped), unmatched, n)


def plot(comparison: Comparison, threshold: float, title: str, out: Path) -> Path:
    """SNR along the depth of the network, with the threshold; identical layers (infinite SNR) are not drawn."""
    from matplotlib.figure import Figure

    snr = comparison.table["snr_db"].replace(math.inf, math.nan)
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    ax.plot(range(len(snr)), snr, marker=".", lw=1)
    ax.axhline(threshold, color="red", ls="--", label=f"threshold {threshold:g} dB")
    first = comparison.first_divergent(threshold)
    if first is not None:
        at = int(comparison.table.index[comparison.table["tensor"] == first][0])
        ax.axvline(at, color="orange", ls=":", label=f"first below: {first}")
    identical = int(np.isinf(comparison.table["snr_db"]).sum())
    ax.set_xlabel("layer (graph order)")
    ax.set_ylabel("SNR (dB)")
    ax.set_title(title + (f" ({identical} identical layers not drawn)" if identical else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


def report(comparison: Comparison, threshold: float, title: str, output: Path) -> None:
    """The table and summary on the terminal; layers.csv, snr.png and unmatched.txt in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    table = comparison.table
    table.to_csv(output / "layers.csv", index_label="layer")
    with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_colwidth", 60):
        print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"\n{title}: {len(table)} layers compared on {comparison.images} images")
    for reason, names in sorted(comparison.dropped.items()):
        print(f"  dropped {len(names)} tensors: {reason} (e.g. {', '.join(names[:3])})")
    lines = []
    for side, names in comparison.unmatched.items():
        if names:
            print(f"  unmatched, {side}: {len(names)} (e.g. {', '.join(names[:EXAMPLES])})")
        lines += [f"{side}\t{name}" for name in names]
    (output / "unmatched.txt").write_text("".join(f"{line}\n" for line in lines))
    worst = table.nsmallest(EXAMPLES, "snr_db")
    print("  worst layers: " + "; ".join(f"{r.tensor} {r.snr_db:.1f} dB" for r in worst.itertuples()))
    print(f"  output ({table.iloc[-1]['tensor']}): SNR {table.iloc[-1]['snr_db']:.2f} dB, "
          f"cosine {table.iloc[-1]['cosine']:.6f}")
    first = comparison.first_divergent(threshold)
    print(f"  first layer below {threshold:g} dB: {first or 'none'}")
    if table["qdq_snr_db"].notna().any():
        own = table.nsmallest(EXAMPLES, "qdq_snr_db")
        print("  worst quantizers (their Q/DQ error alone): "
              + "; ".join(f"{r.tensor} {r.qdq_snr_db:.1f} dB" for r in own.itertuples()))
    plot(comparison, threshold, title, output / "snr.png")
    print(f"wrote {output / 'layers.csv'}, {output / 'snr.png'}, {output / 'unmatched.txt'}")


def open_run(cfg: Any) -> tuple[Any, list, Any, Callable[[], Path]]:
    """What diverge and bisect compare on: the run's recipe, its samples, the context of the model in the run's
    precision (its transformed ONNX, cached; the prepared images) and a way to the fp32 source ONNX."""
    from evalkit import dataset as datasets
    from evalkit import preprocess
    from evalkit.config import cache_dir, tensor_cache_dir
    from evalkit.plugins import make_context

    recipe = preprocess.build(cfg.preprocess)
    samples = datasets.shard(datasets.load(cfg.dataset), cfg.dataset.num_shards, cfg.dataset.shard)
    context = make_context(cfg.model, recipe, cache_dir(cfg), samples, tensor_cache_dir(cfg), cfg.precision)
    return recipe, samples, context, lambda: make_context(cfg.model, recipe, cache_dir(cfg)).onnx_file()


def main(argv: list[str] | None = None) -> None:
    from evalkit.commands import exit_on_user_error, number, own_keys, print_help_if_asked
    from evalkit.config import compose

    args = list(sys.argv[1:] if argv is None else argv)
    print_help_if_asked(args, HELP)

    def run() -> None:
        own, overrides = own_keys(args, KEYS)
        images, threshold = number(own, "images", 64, int), number(own, "threshold", 20.0)
        if images < 1:
            raise UserError(f"images={images} is out of range: must be >= 1")
        reference = own.get("reference", "fp32")
        cfg = compose(overrides)
        precision = cfg.precision.name
        if reference == "fp32" and precision == "fp32":
            raise UserError(f"nothing to compare: give precision=int8|fp16, or reference=PATH.onnx; usage: {USAGE}")
        transforms = plugins(GROUPS["transform"])
        if precision != "fp32" and precision not in transforms:
            raise UserError(f"precision={precision} has no ONNX transform: diverge compares ONNX models; "
                            f"precisions it can compare: fp32 (with reference=PATH.onnx), {', '.join(transforms)}")
        if reference != "fp32" and not Path(reference).is_file():
            raise UserError(f"reference={reference}: no such file; give fp32 or an ONNX file")
        recipe, samples, context, fp32 = open_run(cfg)
        test = context.onnx_file()
        ref = fp32() if reference == "fp32" else Path(reference)
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        output = Path(own.get("output") or Path(cfg.results.dir) / f"diverge-{safe_name(cfg.model.name)}-{precision}-{stamp}")
        shown = samples[:images]
        print(f"model {cfg.model.name} {precision} ({test.name}) vs reference {ref.name}: "
              f"{len(shown)} images of {cfg.dataset.name}")
        with context.prepared(shown) as source:
            comparison = compare(ref, test, source, progress=cfg.progress)
        against = reference if reference == "fp32" else ref.name
        report(comparison, threshold, f"{cfg.model.name} {precision} vs {against}", output)
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
