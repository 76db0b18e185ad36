"""A small, generic report builder: headings, text, tables and matplotlib figures, written as
``DIR/report.md`` (figures as ``DIR/figures/NAME.png``) and a self-contained
``DIR/report.html`` (figures embedded as base64 PNG, no external files).

Example::

    from matplotlib.figure import Figure
    from marginface.evaluation.report import Report

    fig = Figure(figsize=(4, 3))
    fig.add_subplot().plot([0, 1], [0, 1])
    report = Report("My experiment", intro="What was run, and why.")
    report.add_section("Results")
    report.add_table([["arcface", 0.991], ["cosface", 0.987]], headers=["head", "accuracy"])
    report.add_figure(fig, "roc", caption="ROC curves")
    paths = report.write("out/")  # {'markdown': ..., 'html': ..., 'figures': [...]}

Every file is written to a temporary name first and renamed into place, so a failure never
leaves a half-written report.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marginface.files import atomic_write_bytes

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .caption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""


def format_cell(value: Any, float_format: str = "{:.4f}") -> str:
    """Text of one table cell: floats with ``float_format``, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return float_format.format(value)
    return str(value)


@dataclass
class _Block:
    kind: str  # heading | text | code | table | figure
    data: dict[str, Any] = field(default_factory=dict)


class Report:
    """An ordered list of blocks, rendered to Markdown and HTML by :meth:`write`.

    All ``add_*`` methods return the report, so calls can be chained.
    """

    def __init__(self, title: str, intro: str | None = None) -> None:
        self.title = title
        self.blocks: list[_Block] = []
        self._figure_names: set[str] = set()
        if intro:
            self.add_text(intro)

    # ------------------------------------------------------------------------------ building
    def add_section(self, title: str, level: int = 2) -> Report:
        """A heading (level 2 = section, 3 = sub-section)."""
        if level not in (2, 3, 4):
            raise ValueError(f"section level must be 2, 3 or 4, got {level}")
        self.blocks.append(_Block("heading", {"title": title, "level": level}))
        return self

    def add_text(self, text: str) -> Report:
        """A paragraph (blank lines separate paragraphs; shown as plain text in HTML)."""
        self.blocks.append(_Block("text", {"text": str(text)}))
        return self

    def add_code(self, text: str) -> Report:
        """A pre-formatted block (command lines, configs)."""
        self.blocks.append(_Block("code", {"text": str(text)}))
        return self

    def add_table(
        self,
        rows: Sequence[Sequence[Any]],
        headers: Sequence[str] | None = None,
        caption: str | None = None,
        float_format: str = "{:.4f}",
    ) -> Report:
        """A table of rows (lists of cells; floats formatted with ``float_format``).

        Also accepts a list of dicts: the headers are then the keys of the first row
        (unless given) and missing keys make empty cells.
        """
        rows = list(rows)
        if rows and isinstance(rows[0], dict):
            if headers is None:
                headers = list(rows[0].keys())
            rows = [[row.get(h) for h in headers] for row in rows]  # type: ignore[union-attr]
        width = len(headers) if headers is not None else (len(rows[0]) if rows else 0)
        for i, row in enumerate(rows):
            if len(row) != width:
                raise ValueError(f"table row {i} has {len(row)} cells, expected {width}")
        cells = [[format_cell(v, float_format) for v in row] for row in rows]
        self.blocks.append(
            _Block(
                "table",
                {"headers": list(headers) if headers else None, "rows": cells, "caption": caption},
            )
        )
        return self

    def add_figure(self, fig: Any, name: str, caption: str | None = None, dpi: int = 110) -> Report:
        """A matplotlib figure, rendered to PNG now (the figure can be discarded after).

        ``name`` (letters, digits, ``_.-``; unique in the report) names ``figures/NAME.png``.
        """
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return self.add_png(buf.getvalue(), name, caption)

    def add_png(
        self, png: bytes | str | os.PathLike, name: str, caption: str | None = None
    ) -> Report:
        """An already rendered PNG (bytes or a file path)."""
        if not _NAME.match(name):
            raise ValueError(f"figure name {name!r} must use letters, digits, '_', '.', '-'")
        if name in self._figure_names:
            raise ValueError(f"figure name {name!r} is used twice in report {self.title!r}")
        if not isinstance(png, bytes):
            png = Path(png).read_bytes()
        if not png.startswith(b"\x89PNG"):
            raise ValueError(f"figure {name!r} is not a PNG image")
        self._figure_names.add(name)
        self.blocks.append(_Block("figure", {"name": name, "png": png, "caption": caption}))
        return self

    # ----------------------------------------------------------------------------- rendering
    def to_markdown(self) -> str:
        """The Markdown text (figures referenced as ``figures/NAME.png``)."""
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            d = b.data
            if b.kind == "heading":
                out += ["#" * d["level"] + " " + d["title"], ""]
            elif b.kind == "text":
                out += [d["text"], ""]
            elif b.kind == "code":
                out += ["```", d["text"], "```", ""]
            elif b.kind == "table":
                out += _markdown_table(d["headers"], d["rows"])
                if d["caption"]:  # after a blank line: GFM would read it as one more row
                    out += ["", f"*{d['caption']}*"]
                out.append("")
            elif b.kind == "figure":
                alt = d["caption"] or d["name"]
                out += [f"![{alt}](figures/{d['name']}.png)", ""]
                if d["caption"]:
                    out += [f"*{d['caption']}*", ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        """A self-contained HTML page (figures embedded as base64 PNG)."""
        e = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
        ]
        for b in self.blocks:
            d = b.data
            if b.kind == "heading":
                out.append(f"<h{d['level']}>{e(d['title'])}</h{d['level']}>")
            elif b.kind == "text":
                for para in re.split(r"\n\s*\n", d["text"].strip()):
                    out.append(f"<p>{e(para)}</p>")
            elif b.kind == "code":
                out.append(f"<pre>{e(d['text'])}</pre>")
            elif b.kind == "table":
                out.append("<table>")
                if d["caption"]:
                    out.append(f'<caption class="caption">{e(d["caption"])}</caption>')
                if d["headers"]:
                    out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in d["headers"]) + "</tr>")
                for row in d["rows"]:
                    out.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
                out.append("</table>")
            elif b.kind == "figure":
                data = base64.b64encode(d["png"]).decode("ascii")
                alt = e(d["caption"] or d["name"])
                out.append(f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">')
                if d["caption"]:
                    out.append(f"<figcaption>{e(d['caption'])}</figcaption>")
                out.append("</figure>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"

    def write(self, directory: str | os.PathLike) -> dict[str, Any]:
        """Write ``report.md``, ``report.html`` and ``figures/*.png`` under ``directory``.

        Returns ``{"markdown": path, "html": path, "figures": [paths]}``.
        """
        directory = Path(directory)
        markdown, page = self.to_markdown(), self.to_html()
        directory.mkdir(parents=True, exist_ok=True)
        figures = []
        figure_blocks = [b for b in self.blocks if b.kind == "figure"]
        if figure_blocks:
            (directory / "figures").mkdir(exist_ok=True)
        for b in figure_blocks:
            path = directory / "figures" / f"{b.data['name']}.png"
            atomic_write_bytes(path, b.data["png"])
            figures.append(path)
        md_path, html_path = directory / "report.md", directory / "report.html"
        atomic_write_bytes(md_path, markdown.encode("utf-8"))
        atomic_write_bytes(html_path, page.encode("utf-8"))
        return {"markdown": md_path, "html": html_path, "figures": figures}


def _markdown_table(headers: list[str] | None, rows: list[list[str]]) -> list[str]:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\n", " ")

    width = len(headers) if headers else (len(rows[0]) if rows else 0)
    if width == 0:
        return []
    head = headers if headers else [""] * width
    lines = ["| " + " | ".join(esc(h) for h in head) + " |"]
    lines.append("|" + "|".join(["---"] * width) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return lines
