"""The dashboard's chart of rejects per night, as server-rendered SVG (issue 4: no JavaScript library).

One stacked bar per night over the last 30, in three series that call for different people: refused
before sending (pre-flight, ``INVALIDE``: the counsellor corrects Parcours 3), rejected with their
whole envelope (``L01``…``L07``: the integrator), rejected by DUDE's business rules (``E01``…``E10``: the
counsellor). Colours come from the stylesheet (classes only: the console's Content-Security-Policy
allows no inline style); every bar has a ``<title>`` and the page repeats the figures in a table, so
the chart is never the only way to read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

#: (key, French label, CSS class), bottom to top.
SERIES = (
    ("preflight", "Refusés avant envoi", "serie-avant-envoi"),
    ("envelope", "Rejetés avec leur lot (L01–L07)", "serie-lot"),
    ("business", "Rejetés par le DUDE (E01–E10)", "serie-dude"),
)

_W, _H = 760, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 14, 34


@dataclass(frozen=True, slots=True)
class NightCounts:
    day: date
    preflight: int = 0
    envelope: int = 0
    business: int = 0

    @property
    def total(self) -> int:
        return self.preflight + self.envelope + self.business


def nice_max(value: int) -> int:
    """The smallest of 1, 2, 5 × 10ⁿ at or above ``value`` (at least 1): a round top for the axis."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return max(1, step * factor)
        step *= 10


def _steps(top: int) -> int:
    """Intervals of the y axis so that every tick is a whole number: 5 for 1 or 5 × 10ⁿ, 4 for 2 × 10ⁿ."""
    if top < 5:
        return top
    return 4 if str(top)[0] == "2" else 5


def _fr_day(day: date) -> str:
    return day.strftime("%d/%m")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n > 1 else ''}"


def rejects_chart(nights: list[NightCounts]) -> Markup:
    """An SVG of ``nights`` (oldest first), one stacked bar each."""
    top = nice_max(max((n.total for n in nights), default=0))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(len(nights), 1)
    bar = max(slot * 0.7, 1.0)
    total = sum(n.total for n in nights)
    parts = [(f'<svg class="graphique" viewBox="0 0 {_W} {_H}" role="img" aria-labelledby="graphique-titre '
              f'graphique-desc" xmlns="http://www.w3.org/2000/svg">'),
             f'<title id="graphique-titre">Rejets par nuit, sur les {len(nights)} dernières nuits</title>',
             (f'<desc id="graphique-desc">{escape(_plural(total, "rejet"))} en {len(nights)} nuits ; '
              "les chiffres sont repris dans le tableau qui suit le graphique.</desc>")]
    steps = _steps(top)
    for i in range(steps + 1):  # horizontal grid and y labels, on whole numbers
        value = top * i // steps
        y = _TOP + plot_h - plot_h * i / steps
        label = f"{value:,}".replace(",", "\u202f")
        parts.append(f'<line class="grille" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axe" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for index, night in enumerate(nights):
        x = _LEFT + slot * index + (slot - bar) / 2
        y = _TOP + plot_h
        # The label's first letter only: lowercased whole, the tooltip (and a screen reader) said "rejetés par le
        # dude (e01–e10)".
        detail = ", ".join(f"{getattr(night, key)} {label[:1].lower()}{label[1:]}" for key, label, _ in SERIES)
        parts.append(f'<g class="barre"><title>{escape(night.day.strftime("%d/%m/%Y"))} : '
                     f'{escape(_plural(night.total, "rejet"))} ({escape(detail)})</title>')
        for key, _, css in SERIES:
            count = getattr(night, key)
            if not count:
                continue
            height = plot_h * count / top
            y -= height
            parts.append(f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}"/>')
        parts.append("</g>")
        if (len(nights) - 1 - index) % 5 == 0:  # every fifth night, counted back from the last
            parts.append(f'<text class="axe" x="{x + bar / 2:.1f}" y="{_H - _BOTTOM + 16}" '
                         f'text-anchor="middle">{_fr_day(night.day)}</text>')
    parts.append(f'<line class="axe-base" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
