"""The periodic review as a file: self-contained HTML (no scripts, charts as inline SVG) and
PDF (ReportLab, charts as vector drawings). Both are drawn from one ``Content`` — the
notes (a partial period, a late or missing closing snapshot), the KPIs per group with NPS
and CSAT against the previous period, the revenue and NPS charts, the tier migration as a
matrix and a Sankey diagram, and the biggest movers — so they say the same things.

The PDF embeds a TrueType CJK font when the machine has one (``TIERWISE_PDF_FONT``, else
WenQuanYi Zen Hei from the Debian package ``fonts-wqy-zenhei`` and a few other packaged
fonts): every character, Chinese or not, is drawn in it. Without one, Latin text is set in
Helvetica and Chinese in the STSong-Light CID font that PDF readers supply, and the PDF
says so on its first page."""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from tierwise.definitions.vocabulary import label_of
from tierwise.errors import TierwiseError
from tierwise.models import compute
from tierwise.services.review import Review
from tierwise.store.control import utcnow
from tierwise.web import i18n
from tierwise.web.templating import ENV
from tierwise.workspace import Workspace

KPI_COLUMNS = ("revenue", "revenue_share", "conversion_rate", "repurchase_rate", "aov",
               "reactivation_rate", "churn_rate", "nps", "csat")
PERCENTS = {"revenue_share", "conversion_rate", "repurchase_rate", "reactivation_rate",
            "churn_rate"}
BEFORE_COLOUR, NOW_COLOUR = "#adb5bd", "#0b5cad"
#: Colours of the Sankey's states, in order.
STATE_COLOURS = ("#0b5cad", "#2b8a3e", "#e67700", "#c92a2a", "#5f3dc4", "#1098ad", "#868e96")


# -- the content, once for both files --------------------------------------------------------

#: The customer economics a review shows per group.
REPORTED = ("revenue", "gross_margin", "cost_to_serve", "marketing_cost", "acquisition_cost",
            "profit_contribution", "referral_value")


@dataclass
class Series:
    """Values per category for the previous period and this one (a grouped bar chart)."""

    title: str
    categories: list[str]
    before: list[float | None]  # None: no value (no bar, a dash)
    now: list[float | None]
    names: tuple[str, str]  # the previous period's name, this one's
    shown: Callable[[float], str] = lambda v: f"{v:,.0f}"


@dataclass
class Content:
    lang: str
    title: str
    subtitle: str
    notes: list[str]
    kpi_header: list[str]
    kpi_rows: list[tuple[bool, list[str]]]  # (a previous period's row, cells)
    revenue: Series | None
    satisfaction_header: list[str]
    satisfaction_rows: list[list[str]]
    nps: Series | None
    states: list[str]
    grid: list[list[int]]
    flows: list[tuple[str, str, int]]
    migration_note: str | None
    movers: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    words: dict[str, str] = field(default_factory=dict)
    economics_header: list[str] = field(default_factory=list)
    economics_rows: list[list[str]] = field(default_factory=list)
    economics_notes: list[str] = field(default_factory=list)


def _labeller(ws: Workspace, review: Review, lang: str) -> Callable[[Any], str]:
    if review.grouping != "tier":
        return lambda g: str(g)
    labels = compute.load_settings(ws).tiers.labels
    return lambda g: "—" if g is None else label_of(labels, str(g), lang)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if name in PERCENTS:
        return f"{100 * value:.1f}%"
    if name == "nps":
        return f"{value:+.1f}"
    if name == "csat":
        return f"{value:.2f}"
    return f"{value:,.2f}" if name == "aov" else f"{value:,.0f}"


def _words(lang: str) -> dict[str, str]:
    w = dict(i18n.table(lang))
    w["aov"] = w["avg_order_value"]
    w["nps"] = w["nps_score"]
    w["csat"] = w["csat_mean"]
    return w


def _day(when: Any) -> str:
    return "—" if when is None else f"{when:%Y-%m-%d}"


def _last_instant(end: Any) -> Any:
    """The last instant of a period that ends (exclusive) at ``end``."""
    from datetime import timedelta

    return end - timedelta(microseconds=1)


def _notes(review: Review, w: dict[str, str]) -> list[str]:
    notes = []
    if review.partial:
        days = max(1, round((review.period.end - review.period.start).total_seconds() / 86400))
        notes.append(w["partial_period"].format(
            until=f"{review.period.end:%Y-%m-%d %H:%M %Z}", days=days,
            previous=review.previous.name))
    if review.closing_late:
        notes.append(w["closing_late"].format(at=_day(review.closed_at)))
    return notes


def _migration_note(review: Review, w: dict[str, str]) -> str | None:
    if review.migration:
        return None
    if review.closed_at is None and review.opened_at is None:
        return w["no_migration_snapshot"]
    return w["no_migration_same"].format(at=_day(review.closed_at))


def content(ws: Workspace, review: Review, lang: str) -> Content:
    """What the review's HTML and PDF both say, in ``lang``."""
    w = _words(lang)
    label = _labeller(ws, review, lang)
    now_name, before_name = review.period.name, review.previous.name
    kpi_rows: list[tuple[bool, list[str]]] = []
    happy_rows: list[list[str]] = []
    for g in review.groups:
        kpi_rows.append((False, [label(g["group"]), now_name, f"{g['customers']:,}",
                                 *[_cell(c, g["now"].get(c)) for c in KPI_COLUMNS]]))
        kpi_rows.append((True, ["", before_name, "",
                                *[_cell(c, g["before"].get(c)) for c in KPI_COLUMNS]]))
        happy_rows.append([label(g["group"]), *[
            _cell(c, g[when].get(c)) if c in ("nps", "csat") else f"{g[when].get(c) or 0:,}"
            for when in ("before", "now") for c in ("respondents", "nps", "rated", "csat")]])
    names = (before_name, now_name)
    categories = [label(g["group"]) for g in review.groups]
    revenue = Series(w["revenue"], categories, [g["before"]["revenue"] for g in review.groups],
                     [g["now"]["revenue"] for g in review.groups], names) \
        if review.groups else None
    answered = [g for g in review.groups
                if g["now"].get("nps") is not None or g["before"].get("nps") is not None]
    nps = Series(w["nps_of_period"], [label(g["group"]) for g in answered],
                 [g["before"].get("nps") for g in answered],
                 [g["now"].get("nps") for g in answered], names,
                 lambda v: f"{v:+.1f}") if answered else None
    states, grid = _matrix(review, label)
    movers = []
    for title, found in ((w["movers_up"], review.movers_up),
                         (w["movers_down"], review.movers_down)):
        rows = [[m["customer_id"], f"{m['revenue_before']:,.2f}", f"{m['revenue']:,.2f}",
                 f"{m['change']:+,.2f}"] for m in found] or [[w["none"], "", "", ""]]
        movers.append((title, [w["customer"], before_name, now_name, w["change"]], rows))
    return Content(
        lang=lang, title=f"{w['report']} · {now_name}",
        subtitle=f"{_day(review.period.start)} – {_day(_last_instant(review.period.end))} · "
                 f"{w['compare_with']} {before_name} · {w['made_at']} "
                 f"{utcnow().astimezone(review.period.start.tzinfo):%Y-%m-%d %H:%M %Z}",
        notes=_notes(review, w),
        kpi_header=[w["segment"], w["period"], w["customers"], *[w[c] for c in KPI_COLUMNS]],
        kpi_rows=kpi_rows, revenue=revenue,
        satisfaction_header=[w["segment"], *[f"{name} · {w[c]}" for name in names
                                             for c in ("respondents", "nps", "rated", "csat")]],
        satisfaction_rows=happy_rows, nps=nps, states=states, grid=grid,
        flows=[(label(m["from"]), label(m["to"]), m["customers"]) for m in review.migration
               if m["customers"]],
        migration_note=_migration_note(review, w), movers=movers, words=w,
        economics_header=[w["segment"], w["customers"], *[w[f"m_{m}"] for m in REPORTED]],
        economics_rows=[[label(g["group"]), f"{g['customers']:,}",
                         *[f"{g[m]:,.2f}" for m in REPORTED]] for g in review.economics],
        economics_notes=[n.both()[1 if lang == "zh-CN" else 0]
                         for n in review.economics_notes])


def _matrix(review: Review, label: Callable[[Any], str]) -> tuple[list[str], list[list[int]]]:
    codes = sorted({m["from"] for m in review.migration} | {m["to"] for m in review.migration},
                   key=lambda c: (c is None, str(c)))
    index = {c: i for i, c in enumerate(codes)}
    grid = [[0] * len(codes) for _ in codes]
    for m in review.migration:
        grid[index[m["from"]]][index[m["to"]]] += m["customers"]
    return [label(c) for c in codes], grid


# -- chart geometry, drawn in SVG and in ReportLab ------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float  # from the top
    width: float
    height: float
    colour: str
    text: str  # the value, written at the bar's end


def _bar_layout(series: Series, width: float, height: float) -> tuple[list[Bar], float]:
    """Bars of ``series`` in a plot ``width`` × ``height`` (y from the top), and the y of the
    zero line (values may be negative: NPS)."""
    values = [v for v in (*series.before, *series.now, 0.0) if v is not None]
    top, bottom = max(values), min(values)
    span = (top - bottom) or 1.0
    zero = height * top / span
    slot = width / max(1, len(series.categories))
    bar = min(24.0, slot * 0.35)
    bars = []
    for i in range(len(series.categories)):
        for j, (value, colour) in enumerate(((series.before[i], BEFORE_COLOUR),
                                             (series.now[i], NOW_COLOUR))):
            h = height * abs(value or 0.0) / span
            x = i * slot + slot / 2 - bar + j * bar
            bars.append(Bar(x, zero - h if (value or 0.0) >= 0 else zero, bar, h, colour,
                            "—" if value is None else series.shown(value)))
    return bars, zero


@dataclass(frozen=True)
class Node:
    label: str
    count: int
    x: float
    y: float  # from the top
    height: float
    colour: str


@dataclass(frozen=True)
class Band:
    y0: float  # top on the left
    y1: float  # top on the right
    thickness: float
    colour: str


def _sankey_layout(flows: list[tuple[str, str, int]], width: float, height: float,
                   node_width: float = 12.0, gap: float = 8.0) -> tuple[list[Node], list[Band]]:
    """States before (left) and after (right) as stacked bars, the customers moving between
    them as bands from one to the other."""
    left = list(dict.fromkeys(f for f, _, _ in flows))
    right = list(dict.fromkeys(t for _, t, _ in flows))
    order = list(dict.fromkeys([*left, *right]))
    colour = {s: STATE_COLOURS[i % len(STATE_COLOURS)] for i, s in enumerate(order)}
    total = sum(n for _, _, n in flows) or 1
    scale = (height - gap * (max(len(left), len(right)) - 1)) / total
    nodes: list[Node] = []
    tops: dict[tuple[int, str], float] = {}
    for side, states, x in ((0, left, 0.0), (1, right, width - node_width)):
        y = 0.0
        for s in states:
            count = sum(n for f, t, n in flows if (f if side == 0 else t) == s)
            nodes.append(Node(s, count, x, y, count * scale, colour[s]))
            tops[(side, s)] = y
            y += count * scale + gap
    bands = []
    out, into = dict(tops), dict(tops)
    for f, t, n in sorted(flows, key=lambda m: (left.index(m[0]), right.index(m[1]))):
        thickness = n * scale
        bands.append(Band(out[(0, f)], into[(1, t)], thickness, colour[f]))
        out[(0, f)] += thickness
        into[(1, t)] += thickness
    return nodes, bands


def _label_y(bar: Bar, zero: float) -> float:
    """Where a bar's value is written (y from the top): above it, or below a negative one."""
    return bar.y - 4 if bar.y < zero else bar.y + bar.height + 10


def _svg_bars(series: Series) -> Markup:
    width, height, left, top = 640.0, 180.0, 10.0, 40.0
    bars, zero = _bar_layout(series, width - 2 * left, height)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
             f'height="{height + top + 40:.0f}" role="img" aria-label="{escape(series.title)}">']
    for b in bars:
        parts.append(f'<rect x="{left + b.x:.1f}" y="{top + b.y:.1f}" width="{b.width:.1f}" '
                     f'height="{b.height:.1f}" fill="{b.colour}"/>'
                     f'<text x="{left + b.x + b.width / 2:.1f}" y="{top + _label_y(b, zero):.1f}" '
                     f'font-size="9" text-anchor="middle">{escape(b.text)}</text>')
    parts.append(f'<line x1="{left}" x2="{width - left}" y1="{top + zero:.1f}" '
                 f'y2="{top + zero:.1f}" stroke="#495057"/>')
    slot = (width - 2 * left) / max(1, len(series.categories))
    for i, name in enumerate(series.categories):
        parts.append(f'<text x="{left + i * slot + slot / 2:.1f}" y="{top + height + 28:.1f}" '
                     f'font-size="12" text-anchor="middle">{escape(name)}</text>')
    for x, name, colour in ((width - 240, series.names[0], BEFORE_COLOUR),
                            (width - 120, series.names[1], NOW_COLOUR)):
        parts.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="17" font-size="12">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _band_path(b: Band, x0: float, x1: float, top: float) -> str:
    mid = (x0 + x1) / 2
    y0, y1 = top + b.y0, top + b.y1
    return (f"M{x0:.1f},{y0:.1f} C{mid:.1f},{y0:.1f} {mid:.1f},{y1:.1f} {x1:.1f},{y1:.1f} "
            f"L{x1:.1f},{y1 + b.thickness:.1f} C{mid:.1f},{y1 + b.thickness:.1f} "
            f"{mid:.1f},{y0 + b.thickness:.1f} {x0:.1f},{y0 + b.thickness:.1f} Z")


def _svg_sankey(flows: list[tuple[str, str, int]], names: tuple[str, str]) -> Markup:
    width, height, margin, top = 640.0, 260.0, 150.0, 24.0
    nodes, bands = _sankey_layout(flows, width - 2 * margin, height)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
             f'height="{height + top + 10:.0f}" role="img" aria-label="sankey">',
             f'<text x="{margin:.0f}" y="14" font-size="12" text-anchor="middle">'
             f'{escape(names[0])}</text>',
             f'<text x="{width - margin:.0f}" y="14" font-size="12" text-anchor="middle">'
             f'{escape(names[1])}</text>']
    for b in bands:
        parts.append(f'<path d="{_band_path(b, margin + 12, width - margin - 12, top)}" '
                     f'fill="{b.colour}" fill-opacity="0.3"/>')
    for n in nodes:
        x = margin + n.x
        parts.append(f'<rect x="{x:.1f}" y="{top + n.y:.1f}" width="12" '
                     f'height="{max(n.height, 1):.1f}" fill="{n.colour}"/>')
        right = n.x > 0
        parts.append(f'<text x="{x + (18 if right else -6):.1f}" '
                     f'y="{top + n.y + n.height / 2 + 4:.1f}" font-size="12" '
                     f'text-anchor="{"start" if right else "end"}">'
                     f'{escape(n.label)} ({n.count:,})</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def html(ws: Workspace, review: Review, lang: str) -> str:
    found = content(ws, review, lang)
    return ENV.get_template("report.html").render(
        c=found, w=found.words, lang=lang,
        revenue_chart=_svg_bars(found.revenue) if found.revenue else None,
        nps_chart=_svg_bars(found.nps) if found.nps else None,
        sankey=_svg_sankey(found.flows, (review.previous.name, review.period.name))
        if found.flows else None)


# -- PDF -------------------------------------------------------------------------------------


#: Without an embeddable font: Chinese in the STSong-Light CID font (PDF readers supply
#: it), everything else — Latin text, digits, the middle dot, dashes — in Helvetica.
CJK_FONT, LATIN_FONT = "STSong-Light", "Helvetica"
#: Embeddable TrueType fonts that cover Chinese, from Debian packages, first found first.
FONT_FILES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # fonts-arphic-uming
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # fonts-droid-fallback
)
EMBEDDED = "TierwiseCJK"
_FONT_LOCK = threading.Lock()
#: Code points drawn in the CJK font: CJK punctuation, kana, ideographs, full-width forms.
_CJK = re.compile(r"([\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
                  r"\uf900-\ufaff\uff00-\uffef]+)")


def embedded_font() -> str | None:
    """The name of the registered embeddable CJK font, or None when the machine has none.
    ``TIERWISE_PDF_FONT`` names the file to use (a .ttf or .ttc); one that cannot be read
    is an error, not a silent fallback."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    with _FONT_LOCK:
        if EMBEDDED in pdfmetrics.getRegisteredFontNames():
            return EMBEDDED
        chosen = os.environ.get("TIERWISE_PDF_FONT")
        candidates = [chosen] if chosen else [f for f in FONT_FILES if Path(f).is_file()]
        for path in candidates:
            try:
                pdfmetrics.registerFont(TTFont(EMBEDDED, path, subfontIndex=0))
            except (OSError, TTFError) as exc:
                if chosen:
                    raise TierwiseError(
                        f"TIERWISE_PDF_FONT={chosen!r}: cannot use it as the PDF's font "
                        f"({exc}); expected a TrueType font file (.ttf or .ttc) with "
                        "Chinese glyphs",
                        zh=f"TIERWISE_PDF_FONT={chosen!r}：不能用作 PDF 字体（{exc}）；"
                           "应为包含中文字形的 TrueType 字体文件（.ttf 或 .ttc）") from None
                continue
            return EMBEDDED
        return None


def mixed(text: str, font: str | None = None) -> str:
    """``text`` as ReportLab paragraph markup: all in ``font`` when given, else each run in
    the font that has its glyphs."""
    return "".join(f'<font name="{name}">{escape(run)}</font>' for run, name in _runs(text, font))


def pdf(ws: Workspace, review: Review, lang: str) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import (
        KeepTogether,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    c = content(ws, review, lang)
    font = embedded_font()
    if font is None and CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
    styles = getSampleStyleSheet()
    cell = ParagraphStyle("cell", fontName=font or LATIN_FONT, fontSize=7.5, leading=9.5)
    number = ParagraphStyle("number", parent=cell, alignment=2)  # right
    muted = ParagraphStyle("muted", parent=styles["Normal"], textColor=colors.HexColor(
        "#57606a"))

    def para(text: str, style: Any) -> Any:
        return Paragraph(mixed(text, font), style)

    def table(rows: list[list[str]], shaded: set[int] | None = None) -> Any:
        style = [("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f1f3f5")),
                 ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#ced4da")),
                 ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]
        style += [("TEXTCOLOR", (0, i), (-1, i), colors.HexColor("#57606a"))
                  for i in shaded or ()]
        return Table([[para(v, cell if j == 0 or i == 0 else number)
                       for j, v in enumerate(row)] for i, row in enumerate(rows)],
                     repeatRows=1, style=TableStyle(style))

    def section(title: str, *flowables: Any) -> list[Any]:
        """A heading kept on the page of what follows it."""
        return [Spacer(1, 4 * mm), KeepTogether([para(title, styles["Heading2"]),
                                                 flowables[0]]), *flowables[1:]]

    story: list[Any] = [para(c.title, styles["Title"]), para(c.subtitle, muted)]
    story += [para(n, styles["Normal"]) for n in c.notes]
    if font is None:
        story.append(para(c.words["font_note"], muted))
    story += section(c.words["kpis"], table(
        [c.kpi_header, *[cells for _, cells in c.kpi_rows]],
        {i + 1 for i, (before, _) in enumerate(c.kpi_rows) if before}))
    if c.revenue is not None:
        story += section(c.revenue.title, _pdf_bars(c.revenue, font))
    story += section(c.words["satisfaction"],
                     table([c.satisfaction_header, *c.satisfaction_rows]))
    if c.nps is not None:
        story += section(c.nps.title, _pdf_bars(c.nps, font))
    if c.migration_note:
        story += section(c.words["migration"], para(c.migration_note, styles["Normal"]))
    else:
        story += section(c.words["migration"], table(
            [[f"{c.words['before']} \\ {c.words['after']}", *c.states],
             *[[s, *[f"{v:,}" for v in line]] for s, line in zip(c.states, c.grid,
                                                                 strict=True)]]),
            Spacer(1, 3 * mm),
            _pdf_sankey(c.flows, (review.previous.name, review.period.name), font))
    if c.economics_rows:
        story += section(c.words["economics"], table([c.economics_header, *c.economics_rows]),
                         *[para(n, muted) for n in c.economics_notes])
    for title, header, rows in c.movers:
        story += section(title, table([header, *rows]))
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=landscape(A4), title=c.title,
                      leftMargin=12 * mm, rightMargin=12 * mm, topMargin=12 * mm,
                      bottomMargin=12 * mm).build(story)
    return buffer.getvalue()


def _runs(text: str, font: str | None) -> list[tuple[str, str]]:
    """``text`` as (run, font) pairs: one run in ``font`` when given, else each run in the
    font that has its glyphs (as ``mixed`` does for paragraphs)."""
    if font is not None:
        return [(text, font)]
    return [(run, CJK_FONT if i % 2 else LATIN_FONT)
            for i, run in enumerate(_CJK.split(text)) if run]


def _label(drawing: Any, x: float, y: float, text: str, size: float, font: str | None,
           anchor: str = "start") -> None:
    """Write ``text`` on a drawing at (x, y), anchored at its start, middle or end, each run
    in a font that has its glyphs."""
    from reportlab.graphics.shapes import String
    from reportlab.pdfbase.pdfmetrics import stringWidth

    runs = _runs(text, font)
    width = sum(stringWidth(run, name, size) for run, name in runs)
    x -= {"start": 0.0, "middle": width / 2, "end": width}[anchor]
    for run, name in runs:
        drawing.add(String(x, y, run, fontName=name, fontSize=size))
        x += stringWidth(run, name, size)


def _pdf_bars(series: Series, font: str | None) -> Any:
    from reportlab.graphics.shapes import Drawing, Line, Rect
    from reportlab.lib import colors

    width, height, left, bottom = 640.0, 150.0, 10.0, 34.0
    bars, zero = _bar_layout(series, width - 2 * left, height)
    drawing = Drawing(width, height + bottom + 34)
    top = bottom + height  # ReportLab's y runs upwards
    for b in bars:
        drawing.add(Rect(left + b.x, top - b.y - b.height, b.width, b.height,
                         fillColor=colors.HexColor(b.colour), strokeColor=None))
        _label(drawing, left + b.x + b.width / 2, top - _label_y(b, zero) - 3, b.text, 6.5,
               font, "middle")
    drawing.add(Line(left, top - zero, width - left, top - zero,
                     strokeColor=colors.HexColor("#495057")))
    slot = (width - 2 * left) / max(1, len(series.categories))
    for i, name in enumerate(series.categories):
        _label(drawing, left + i * slot + slot / 2, 4, name, 8, font, "middle")
    for x, name, colour in ((width - 240, series.names[0], BEFORE_COLOUR),
                            (width - 120, series.names[1], NOW_COLOUR)):
        drawing.add(Rect(x, top + 20, 8, 8, fillColor=colors.HexColor(colour),
                         strokeColor=None))
        _label(drawing, x + 12, top + 21, name, 8, font)
    return drawing


def _pdf_sankey(flows: list[tuple[str, str, int]], names: tuple[str, str],
                font: str | None) -> Any:
    from reportlab.graphics.shapes import Drawing, Path, Rect
    from reportlab.lib import colors

    width, height, margin, top_pad = 640.0, 220.0, 150.0, 20.0
    nodes, bands = _sankey_layout(flows, width - 2 * margin, height)
    drawing = Drawing(width, height + top_pad + 6)
    top = height + 6  # y of the layout's 0 line, ReportLab's y running upwards

    for x, name in ((margin, names[0]), (width - margin, names[1])):
        _label(drawing, x, top + 6, name, 8, font, "middle")
    x0, x1 = margin + 12, width - margin - 12
    mid = (x0 + x1) / 2
    for b in bands:
        y0, y1 = top - b.y0, top - b.y1
        solid = colors.HexColor(b.colour)
        path = Path(fillColor=colors.Color(solid.red, solid.green, solid.blue, alpha=0.3),
                    strokeColor=None)
        path.moveTo(x0, y0)
        path.curveTo(mid, y0, mid, y1, x1, y1)
        path.lineTo(x1, y1 - b.thickness)
        path.curveTo(mid, y1 - b.thickness, mid, y0 - b.thickness, x0, y0 - b.thickness)
        path.closePath()
        drawing.add(path)
    for n in nodes:
        x = margin + n.x
        drawing.add(Rect(x, top - n.y - max(n.height, 1), 12, max(n.height, 1),
                         fillColor=colors.HexColor(n.colour), strokeColor=None))
        right = n.x > 0
        text = f"{n.label} ({n.count:,})"
        _label(drawing, x + (18 if right else -6), top - n.y - n.height / 2 - 3, text, 8, font,
               "start" if right else "end")
    return drawing
