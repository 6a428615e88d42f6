"""ECharts options built on the server: the browser only draws them (SVG renderer).

Options are plain JSON (no functions), so label formats use ECharts' template strings.
Colours are a palette with enough contrast on white for text and marks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PALETTE = ["#0b5cad", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#1864ab", "#e67700",
           "#5c940d", "#495057", "#0c8599", "#a61e4d"]
TIER_COLOURS = {"A": "#0b5cad", "B": "#2b8a3e", "C": "#e67700", "D": "#868e96"}
Option = dict[str, Any]


def _base(title: str | None = None) -> Option:
    option: Option = {"color": PALETTE, "animation": False, "aria": {"enabled": True},
                      "textStyle": {"fontFamily": "system-ui, sans-serif"},
                      "tooltip": {"trigger": "item"}}
    if title:
        option["title"] = {"text": title, "left": 0, "textStyle": {"fontSize": 14}}
    return option


def donut(title: str, items: list[tuple[str, float]], colours: list[str] | None = None) -> Option:
    option = _base(title)
    option["tooltip"] = {"trigger": "item", "formatter": "{b}: {c} ({d}%)"}
    option["legend"] = {"bottom": 0}
    series: Option = {"type": "pie", "radius": ["42%", "68%"], "center": ["50%", "46%"],
                      "label": {"formatter": "{d}%"},
                      "data": [{"name": n, "value": v} for n, v in items]}
    if colours:
        option["color"] = colours
    option["series"] = [series]
    return option


def bars(title: str, categories: list[str], series: list[tuple[str, list[float]]],
         horizontal: bool = False, percent: bool = False) -> Option:
    option = _base(title)
    option["tooltip"] = {"trigger": "axis"}
    option["legend"] = {"top": 24, "right": 0} if len(series) > 1 else {"show": False}
    option["grid"] = {"left": 8, "right": 16, "bottom": 8, "top": 56, "containLabel": True}
    category = {"type": "category", "data": categories}
    value: Option = {"type": "value"}
    if percent:
        value["axisLabel"] = {"formatter": "{value}%"}
    option["xAxis"], option["yAxis"] = (value, category) if horizontal else (category, value)
    option["series"] = [{"type": "bar", "name": name, "data": data} for name, data in series]
    return option


def trend(title: str, months: list[str], bars_name: str, bar_values: Sequence[float | None],
          line_name: str, line_values: Sequence[float | None]) -> Option:
    """Bars on the left axis and a line on the right (e.g. revenue and buyers per month)."""
    option = _base(title)
    option["tooltip"] = {"trigger": "axis"}
    option["legend"] = {"top": 24, "right": 0}
    option["grid"] = {"left": 8, "right": 8, "bottom": 8, "top": 56, "containLabel": True}
    option["xAxis"] = {"type": "category", "data": months}
    option["yAxis"] = [{"type": "value"}, {"type": "value", "splitLine": {"show": False}}]
    option["series"] = [
        {"type": "bar", "name": bars_name, "data": list(bar_values)},
        {"type": "line", "name": line_name, "yAxisIndex": 1, "data": list(line_values),
         "symbolSize": 6}]
    return option


def heatmap(title: str, cells: list[tuple[int, int, float]], x_name: str, y_name: str,
            scores: int = 5) -> Option:
    """R (x) × F (y) scores 1..n; cells are (r, f, value)."""
    option = _base(title)
    option["tooltip"] = {"position": "top"}
    option["grid"] = {"left": 28, "right": 8, "bottom": 64, "top": 36, "containLabel": True}
    axis = [str(i) for i in range(1, scores + 1)]
    option["xAxis"] = {"type": "category", "data": axis, "name": x_name,
                       "nameLocation": "middle", "nameGap": 24, "splitArea": {"show": True}}
    option["yAxis"] = {"type": "category", "data": axis, "name": y_name,
                       "nameLocation": "middle", "nameGap": 24, "splitArea": {"show": True}}
    values = [v for _, _, v in cells] or [0]
    option["visualMap"] = {"min": 0, "max": max(values), "calculable": True,
                           "orient": "horizontal", "left": "center", "bottom": 0,
                           "inRange": {"color": ["#e7f0fa", "#0b5cad"]}}
    option["series"] = [{"type": "heatmap", "label": {"show": True},
                         "data": [[r - 1, f - 1, round(v)] for r, f, v in cells]}]
    return option


def treemap(title: str, items: list[tuple[str, float]]) -> Option:
    """Rectangles by value; each item carries its position (``index``) so that a click
    finds its link whatever order the chart lays them out in."""
    option = _base(title)
    option["tooltip"] = {"formatter": "{b}: {c}"}
    option["series"] = [{"type": "treemap", "roam": False, "nodeClick": False,
                         "breadcrumb": {"show": False}, "label": {"formatter": "{b}\n{c}"},
                         "data": [{"name": n, "value": v, "index": i}
                                  for i, (n, v) in enumerate(items)]}]
    return option


def sankey(title: str, flows: list[tuple[str, str, int]], left: str, right: str) -> Option:
    """Flows between two states; node names get the side appended so both sides may share
    names (A before → A after)."""
    option = _base(title)
    option["tooltip"] = {"trigger": "item"}
    nodes: dict[str, None] = {}
    links = []
    for source, target, value in flows:
        a, b = f"{source} · {left}", f"{target} · {right}"
        nodes.setdefault(a)
        nodes.setdefault(b)
        links.append({"source": a, "target": b, "value": value})
    option["series"] = [{"type": "sankey", "emphasis": {"focus": "adjacency"},
                         "nodeAlign": "justify", "data": [{"name": n} for n in nodes],
                         "links": links, "lineStyle": {"color": "gradient", "opacity": 0.4},
                         "label": {"color": "#1b1f24"}}]
    return option


def funnel(title: str, items: list[tuple[str, float]]) -> Option:
    option = _base(title)
    option["tooltip"] = {"trigger": "item", "formatter": "{b}: {c}"}
    option["series"] = [{"type": "funnel", "sort": "none", "left": "10%", "width": "80%",
                         "label": {"formatter": "{b}: {c}"},
                         "data": [{"name": n, "value": v} for n, v in items]}]
    return option


def curve(title: str, points: list[tuple[float, float]], x_name: str, y_name: str) -> Option:
    """A line over [0, 1] × [0, 1] shown in percent, with the diagonal for reference."""
    option = _base(title)
    option["tooltip"] = {"trigger": "axis"}
    option["grid"] = {"left": 8, "right": 24, "bottom": 24, "top": 40, "containLabel": True}
    option["xAxis"] = {"type": "value", "min": 0, "max": 100, "name": x_name,
                       "nameLocation": "middle", "nameGap": 28,
                       "axisLabel": {"formatter": "{value}%"}}
    option["yAxis"] = {"type": "value", "min": 0, "max": 100,
                       "axisLabel": {"formatter": "{value}%"}}
    option["series"] = [
        {"type": "line", "name": y_name, "symbolSize": 4, "areaStyle": {"opacity": 0.15},
         "data": [[round(100 * x, 2), round(100 * y, 2)] for x, y in points]},
        {"type": "line", "name": "—", "showSymbol": False, "silent": True,
         "lineStyle": {"type": "dashed", "color": "#868e96"}, "data": [[0, 0], [100, 100]]}]
    return option


def sparkline(values: Sequence[float]) -> Option:
    return {"animation": False, "grid": {"left": 0, "right": 0, "top": 2, "bottom": 2},
            "xAxis": {"type": "category", "show": False,
                      "data": list(range(len(values)))},
            "yAxis": {"type": "value", "show": False, "scale": True},
            "series": [{"type": "line", "data": values, "showSymbol": False,
                        "lineStyle": {"width": 1.5, "color": PALETTE[0]}}]}


def satisfaction_trend(title: str, months: list[dict[str, Any]], w: dict[str, str]) -> Option:
    """NPS (bars, left axis) and CSAT (line, right axis) per month; a month under way is
    marked as partial."""
    return trend(title, [f"{m['month']} ({w['partial']})" if m["partial"] else m["month"]
                         for m in months],
                 w["nps_score"], [m["nps"] for m in months],
                 w["csat_mean"], [m["csat"] for m in months])
