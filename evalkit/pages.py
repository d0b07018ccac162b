"""Static HTML pages that open from file:// with no network: one template, inline CSS and JS, pictures as data: URIs.

Shared by the comparison page (``evalkit.compare``) and the nightly site (``evalkit.report``). Everything that
comes from data is escaped here or by pandas.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd

#: the width the pages are laid out for; figures are made to fit it (``figsize`` in inches at ``DPI``)
WIDTH_PX = 1100
DPI = 100

CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;padding:1em 2em;max-width:%dpx;color:#222}
nav{margin-bottom:1em}nav a{margin-right:1.2em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f3f3f3}img{max-width:100%%}
.pass{color:#1a7f37;font-weight:bold}.fail{color:#c62828;font-weight:bold}.unverified{color:#9a6700;font-weight:bold}
ol.top5{margin:0;padding-left:1.4em}.hit{font-weight:bold;color:#1a7f37}
.thumb{width:112px}.filters label{margin-right:1em}.note{color:#555}.scroll{overflow-x:auto}
.card{display:inline-block;vertical-align:top;width:520px;margin:0 12px 12px 0}.card h3{font-size:14px;margin:.3em 0}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:12px}
""" % WIDTH_PX


def page(title: str, body: str, nav: str = "") -> str:
    """A whole page: ``title`` is escaped, ``body`` and ``nav`` are HTML already."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{nav}<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def table(frame: pd.DataFrame, index: bool = False, **attrs: str) -> str:
    """A data frame as an escaped HTML table: three decimals, "-" for missing values."""
    return "<div class=scroll>" + frame.to_html(index=index, float_format=lambda v: f"{v:.3f}", na_rep="-", border=0,
                                                table_id=attrs.get("id"), classes=attrs.get("classes")) + "</div>"


def pyplot():
    """matplotlib's pyplot on the Agg backend: pages are made without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(fig) -> str:
    """A matplotlib figure as an ``<img>`` with the PNG inline; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    pyplot().close(fig)
    return f'<p><img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"></p>'


def thumbnail(path: str | Path | None, size: int = 112) -> str | None:
    """The decoded original, downscaled to fit ``size`` pixels, as a JPEG data: URI; None when it cannot be read
    (an image inside a tar shard, a folder no longer there)."""
    from PIL import Image, ImageOps

    if not isinstance(path, (str, Path)) or not Path(path).is_file():  # NaN: no path recorded
        return None
    try:
        with Image.open(path) as image:
            small = ImageOps.exif_transpose(image).convert("RGB")
            small.thumbnail((size, size))
    except OSError:
        return None
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
