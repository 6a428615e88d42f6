"""The periodic review as a file: self-contained HTML (no scripts, charts as inline SVG) and
PDF (reportlab: the same sections — KPIs per group, the revenue chart, tier migration and
the biggest movers — with Chinese text in the STSong-Light CID font, which PDF readers
supply, and everything else in Helvetica)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

from markupsafe import Markup, escape

from tierwise.definitions.vocabulary import label_of
from tierwise.models import compute
from tierwise.services.review import Review
from tierwise.store.control import utcnow
from tierwise.web import i18n
from tierwise.web.templating import ENV
from tierwise.workspace import Workspace

KPI_COLUMNS = ("revenue", "revenue_share", "conversion_rate", "repurchase_rate", "aov",
               "reactivation_rate", "churn_rate")
PERCENTS = {"revenue_share", "conversion_rate", "repurchase_rate", "reactivation_rate",
            "churn_rate"}


def _labeller(ws: Workspace, review: Review, lang: str) -> Callable[[Any], str]:
    if review.grouping != "tier":
        return lambda g: str(g)
    labels = compute.load_settings(ws).tiers.labels
    return lambda g: label_of(labels, None if g is None else str(g), lang)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if name in PERCENTS:
        return f"{100 * value:.1f}%"
    return f"{value:,.2f}" if name == "aov" else f"{value:,.0f}"


def _words(lang: str) -> dict[str, str]:
    w = dict(i18n.table(lang))
    w["aov"] = w["avg_order_value"]
    return w


def _matrix(review: Review) -> tuple[list[str], list[list[int]]]:
    states = sorted({str(m["from"] or "—") for m in review.migration}
                    | {str(m["to"] or "—") for m in review.migration})
    index = {s: i for i, s in enumerate(states)}
    grid = [[0] * len(states) for _ in states]
    for m in review.migration:
        grid[index[str(m["from"] or "—")]][index[str(m["to"] or "—")]] += m["customers"]
    return states, grid


def _bars_svg(review: Review, label: Callable[[Any], str]) -> Markup:
    """Revenue per group, the previous period beside this one, as an SVG bar chart."""
    groups = review.groups
    if not groups:
        return Markup("")
    top = max(max(g["now"]["revenue"], g["before"]["revenue"]) for g in groups) or 1.0
    width, bar, gap, height = 640, 18, 14, 180
    slot = 2 * bar + gap
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height + 40}" role="img" aria-label="revenue">']
    for i, g in enumerate(groups):
        x = 40 + i * slot * 1.5
        for j, (value, colour) in enumerate(((g["before"]["revenue"], "#adb5bd"),
                                             (g["now"]["revenue"], "#0b5cad"))):
            h = height * value / top
            parts.append(f'<rect x="{x + j * bar:.1f}" y="{height - h + 10:.1f}" width="{bar}" '
                         f'height="{h:.1f}" fill="{colour}"/>')
        name = Markup.escape(label(g["group"]))
        parts.append(f'<text x="{x:.1f}" y="{height + 28}" font-size="12">{name}</text>')
    parts.append(f'<text x="{width - 200}" y="20" font-size="12" fill="#495057">■ '
                 f'{Markup.escape(review.previous.name)}</text>')
    parts.append(f'<text x="{width - 100}" y="20" font-size="12" fill="#0b5cad">■ '
                 f'{Markup.escape(review.period.name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def html(ws: Workspace, review: Review, lang: str) -> str:
    label = _labeller(ws, review, lang)
    states, grid = _matrix(review)
    return ENV.get_template("report.html").render(
        w=_words(lang), lang=lang, r=review, label=label, columns=KPI_COLUMNS, cell=_cell,
        states=states, grid=grid, chart=_bars_svg(review, label), made=utcnow())


#: The PDF's fonts: Chinese in the STSong-Light CID font (PDF readers supply it), everything
#: else — Latin text, digits, the middle dot, dashes — in Helvetica, one of the standard
#: fonts every reader has. STSong-Light alone left "·", "–" and "—" as empty boxes in
#: readers whose substitute for it lacks them.
CJK_FONT, LATIN_FONT = "STSong-Light", "Helvetica"
#: Code points drawn in the CJK font: CJK punctuation, kana, ideographs, full-width forms.
_CJK = re.compile(r"([\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
                  r"\uf900-\ufaff\uff00-\uffef]+)")


def mixed(text: str) -> str:
    """``text`` as ReportLab paragraph markup, each run in the font that has its glyphs."""
    parts = []
    for i, run in enumerate(_CJK.split(text)):
        if run:
            parts.append(f'<font name="{CJK_FONT if i % 2 else LATIN_FONT}">'
                         f"{escape(run)}</font>")
    return "".join(parts)


def pdf(ws: Workspace, review: Review, lang: str) -> bytes:
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing, Rect, String
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    if CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
    w = _words(lang)
    label = _labeller(ws, review, lang)
    styles = getSampleStyleSheet()
    cell = ParagraphStyle("cell", fontName=LATIN_FONT, fontSize=8, leading=10)
    number = ParagraphStyle("number", parent=cell, alignment=2)  # right

    def para(text: str, style: Any) -> Any:
        return Paragraph(mixed(text), style)

    def table(rows: list[list[str]]) -> Any:
        return Table([[para(v, cell if j == 0 or i == 0 else number)
                       for j, v in enumerate(row)] for i, row in enumerate(rows)],
                     repeatRows=1, style=TableStyle([
                         ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f1f3f5")),
                         ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#ced4da")),
                         ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))

    story: list[Any] = [
        para(f"{w['report']} · {review.period.name}", styles["Title"]),
        para(f"{review.period.start:%Y-%m-%d} – {review.period.end:%Y-%m-%d} · "
             f"{w['compare_with']} {review.previous.name}", styles["Normal"]),
        Spacer(1, 4 * mm), para(w["kpis"], styles["Heading2"])]
    rows: list[list[str]] = [[w["segment"], w["period"], w["customers"],
                              *[w[c] for c in KPI_COLUMNS]]]
    for g in review.groups:
        rows.append([label(g["group"]), review.period.name, f"{g['customers']:,}",
                     *[_cell(c, g["now"].get(c)) for c in KPI_COLUMNS]])
        rows.append(["", review.previous.name, "",
                     *[_cell(c, g["before"].get(c)) for c in KPI_COLUMNS]])
    story.append(table(rows))
    if review.groups:  # revenue per group, the previous period beside this one
        chart = VerticalBarChart()
        chart.x, chart.y, chart.width, chart.height = 40, 30, 520, 150
        chart.data = [[g["before"]["revenue"] for g in review.groups],
                      [g["now"]["revenue"] for g in review.groups]]
        chart.categoryAxis.categoryNames = [label(g["group"]).split(" · ")[0]
                                            for g in review.groups]
        chart.categoryAxis.labels.fontName = CJK_FONT if any(
            _CJK.search(n) for n in chart.categoryAxis.categoryNames) else LATIN_FONT
        chart.categoryAxis.labels.fontSize = 8
        chart.valueAxis.labels.fontName = LATIN_FONT
        chart.valueAxis.labels.fontSize = 7
        chart.valueAxis.valueMin = 0
        chart.valueAxis.labelTextFormat = lambda v: f"{v:,.0f}"
        chart.bars[0].fillColor = colors.HexColor("#adb5bd")
        chart.bars[1].fillColor = colors.HexColor("#0b5cad")
        drawing = Drawing(600, 200)
        drawing.add(chart)
        for x, text, colour in ((380, review.previous.name, "#adb5bd"),
                                (480, review.period.name, "#0b5cad")):  # the legend
            drawing.add(Rect(x, 187, 8, 8, fillColor=colors.HexColor(colour),
                             strokeColor=None))
            drawing.add(String(x + 12, 188, text, fontName=LATIN_FONT, fontSize=8))
        story += [Spacer(1, 4 * mm), para(w["revenue"], styles["Heading2"]), drawing]
    if review.migration:
        states, grid = _matrix(review)
        story += [Spacer(1, 4 * mm), para(w["migration"], styles["Heading2"]),
                  table([[f"{w['before']} \\ {w['after']}", *states],
                         *[[s, *[f"{v:,}" for v in line]] for s, line in zip(states, grid,
                                                                             strict=True)]])]
    for title, movers in ((w["movers_up"], review.movers_up),
                          (w["movers_down"], review.movers_down)):
        story += [Spacer(1, 4 * mm), para(title, styles["Heading2"])]
        moved = [[w["customer"], review.previous.name, review.period.name, w["change"]]]
        moved += [[m["customer_id"], f"{m['revenue_before']:,.2f}", f"{m['revenue']:,.2f}",
                   f"{m['change']:,.2f}"] for m in movers] or [[w["none"], "", "", ""]]
        story.append(table(moved))
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=landscape(A4), title=f"tierwise {review.period.name}",
                      leftMargin=12 * mm, rightMargin=12 * mm, topMargin=12 * mm,
                      bottomMargin=12 * mm).build(story)
    return buffer.getvalue()
