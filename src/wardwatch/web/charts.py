"""The risk-over-time chart of the patient page, as inline SVG drawn on the server.

No chart library and no script: the page must render on a locked-down workstation, print,
and be read by a screen reader (the SVG has a title and a one-sentence description of what it
shows). What it draws is what rule 2 asks of every alert — the risk *with its uncertainty*:

- the band between risk − uncertainty and risk + uncertainty (clipped to 0–100 %),
- the risk line, broken where hours were not scored (a gap is shown as a gap, never bridged),
- the unit's alert threshold as a dashed, labelled line,
- hours whose inputs were out of distribution as hollow markers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

import pandas as pd
from markupsafe import Markup

from wardwatch.terminology import wording

WIDTH, HEIGHT = 960, 280
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 14, 30
GAP = timedelta(hours=1.5)  # scores further apart than this are not joined


@dataclass(frozen=True, slots=True)
class _Frame:
    """The chart's coordinate system: data time and risk to SVG x and y."""

    start: datetime
    end: datetime
    top: float  # the highest risk on the y axis

    def x(self, at: datetime) -> float:
        span = max((self.end - self.start).total_seconds(), 3600.0)
        return LEFT + (WIDTH - LEFT - RIGHT) * (at - self.start).total_seconds() / span

    def y(self, risk: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - min(risk, self.top) / self.top)


def risk_chart(history: pd.DataFrame, threshold: float | None) -> Markup:
    """The SVG chart of a stay's risk history (columns as_of, risk, uncertainty, ood)."""
    if history.empty:
        return Markup('<p class="muted">No risk scores yet for this stay.</p>')
    rows = _rows(history)
    frame = _frame(rows, threshold)
    parts = [
        _open_svg(_description(rows, threshold)),
        *_grid(frame),
        *(_band(frame, segment) for segment in _segments(rows)),
        *(_line(frame, segment) for segment in _segments(rows)),
        *_ood_marks(frame, rows),
        *_threshold(frame, threshold),
        "</svg>",
    ]
    return Markup("\n".join(parts))


def _rows(history: pd.DataFrame) -> list[tuple[datetime, float, float, bool]]:
    ordered = history.sort_values("as_of")
    return [
        (pd.Timestamp(r.as_of).to_pydatetime(), float(r.risk), float(r.uncertainty), bool(r.ood))
        for r in ordered.itertuples()
    ]


def _frame(rows: list[tuple[datetime, float, float, bool]], threshold: float | None) -> _Frame:
    highest = max(min(1.0, risk + unc) for _, risk, unc, _ in rows)
    top = _nice_ceiling(max(highest, 1.5 * (threshold or 0.0), 0.01) * 1.08)
    return _Frame(rows[0][0], rows[-1][0], top)


def _nice_ceiling(value: float) -> float:
    """The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 × 10^k) at or above `value`,
    capped at 100 %: the axis ends just above the data, at a number that divides in four."""
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * power >= value - 1e-12:
            return min(1.0, step * power)
    return 1.0  # pragma: no cover - the loop always returns


def _segments(
    rows: list[tuple[datetime, float, float, bool]],
) -> list[list[tuple[datetime, float, float, bool]]]:
    segments = [[rows[0]]]
    for previous, row in itertools.pairwise(rows):
        if row[0] - previous[0] > GAP:
            segments.append([])
        segments[-1].append(row)
    return segments


def _description(rows: list[tuple[datetime, float, float, bool]], threshold: float | None) -> str:
    _, risk, unc, _ = rows[-1]
    peak = max(rows, key=lambda r: r[1])
    hours = (rows[-1][0] - rows[0][0]).total_seconds() / 3600
    text = (
        f"Risk over {hours:.0f} hours: now {wording.percent(risk)} "
        f"(±{100 * unc:.1f} points), highest {wording.percent(peak[1])} at {peak[0]:%d %b %H:%M}"
    )
    if threshold is not None:
        text += f"; alert threshold {wording.percent(threshold)}"
    ood = sum(r[3] for r in rows)
    return text + (f"; {ood} hours with unusual inputs." if ood else ".")


def _open_svg(description: str) -> str:
    return (
        f'<svg class="risk-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="risk-chart-title risk-chart-desc" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="risk-chart-title">Risk over time</title>'
        f'<desc id="risk-chart-desc">{escape(description)}</desc>'
    )


def _grid(frame: _Frame) -> list[str]:
    parts = []
    for k in range(5):
        risk = frame.top * k / 4
        y = frame.y(risk)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/>')  # fmt: skip
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{escape(_tick_percent(risk))}</text>")  # fmt: skip
    for at in _time_ticks(frame):
        x = frame.x(at)
        parts.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
                     f"{at:%H:%M}</text>")  # fmt: skip
    return parts


def _tick_percent(risk: float) -> str:
    return f"{100 * risk:.3g}%"


def _time_ticks(frame: _Frame) -> list[datetime]:
    hours = (frame.end - frame.start).total_seconds() / 3600
    step = next((s for s in (1, 2, 3, 6, 12, 24, 48) if hours / s <= 8), 96)
    first = frame.start.replace(minute=0, second=0, microsecond=0)
    first += timedelta(hours=-first.hour % step)
    if first < frame.start:
        first += timedelta(hours=step)
    count = int((frame.end - first).total_seconds() // (3600 * step)) + 1
    return [first + timedelta(hours=step * k) for k in range(max(count, 0))]


def _band(frame: _Frame, segment: list[tuple[datetime, float, float, bool]]) -> str:
    upper = [(frame.x(at), frame.y(min(1.0, r + u))) for at, r, u, _ in segment]
    lower = [(frame.x(at), frame.y(max(0.0, r - u))) for at, r, u, _ in reversed(segment)]
    if len(segment) == 1:  # one hour: a short vertical bar instead of an invisible polygon
        (x, y1), (_, y2) = upper[0], lower[0]
        return f'<rect class="band" x="{x - 2:.1f}" y="{y1:.1f}" width="4" height="{y2 - y1:.1f}"/>'
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower)
    return f'<polygon class="band" points="{points}"/>'


def _line(frame: _Frame, segment: list[tuple[datetime, float, float, bool]]) -> str:
    if len(segment) == 1:
        at, risk, _, _ = segment[0]
        return f'<circle class="risk-dot" cx="{frame.x(at):.1f}" cy="{frame.y(risk):.1f}" r="3"/>'
    points = " ".join(f"{frame.x(at):.1f},{frame.y(r):.1f}" for at, r, _, _ in segment)
    return f'<polyline class="risk" points="{points}"/>'


def _ood_marks(frame: _Frame, rows: list[tuple[datetime, float, float, bool]]) -> list[str]:
    return [
        f'<circle class="ood" cx="{frame.x(at):.1f}" cy="{frame.y(r):.1f}" r="5">'
        f"<title>{at:%d %b %H:%M}: inputs unlike the training population</title></circle>"
        for at, r, _, ood in rows
        if ood
    ]


def _threshold(frame: _Frame, threshold: float | None) -> list[str]:
    if threshold is None:
        return []
    y = frame.y(threshold)
    label = f"alert threshold {wording.percent(threshold)}"
    return [
        f'<line class="threshold" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>',
        f'<text class="threshold-label" x="{WIDTH - RIGHT - 4}" y="{y - 5:.1f}" '
        f'text-anchor="end">{escape(label)}</text>',
    ]
