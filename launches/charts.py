"""A small inline SVG chart, drawn on the server: the site loads no JavaScript library and no CDN."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from launches.models import Launch

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 12, 28
FIRST_COLOUR = "#ba2121"  # the admin's error red: a start that had to find its limit
SAVED_COLOUR = "#417690"  # the admin's header blue: a start with the limit already known


def _nice_ceiling(value: float) -> int:
    # Ceilings that split into four round ticks.
    for step in (20, 40, 60, 80, 100, 120, 160, 200, 240, 400, 600, 1200, 2400, 3600):
        if value <= step:
            return step
    return int(value) + 1


def time_to_ready_chart(launches: Sequence[Launch]) -> SafeString:
    """One bar per launch (oldest left): seconds from request to ready, coloured by first detection."""
    points = [(launch, launch.time_to_ready) for launch in launches if launch.time_to_ready is not None]
    if not points:
        return mark_safe('<p class="help">No launch has become ready yet.</p>')
    ceiling = _nice_ceiling(max(seconds for _, seconds in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(points)
    bar_w = max(min(slot * 0.7, 24), 2)
    # format_html escapes its arguments into strings, so numbers are formatted before they go in.
    bars = []
    for position, (launch, seconds) in enumerate(points):
        height = plot_h * seconds / ceiling
        first = launch.known_limit is None
        bars.append(
            (
                f"{LEFT + position * slot + (slot - bar_w) / 2:.1f}",
                f"{TOP + plot_h - height:.1f}",
                f"{bar_w:.1f}",
                f"{height:.1f}",
                FIRST_COLOUR if first else SAVED_COLOUR,
                launch.pk,
                f"{seconds:.0f}",
                "first detection" if first else "saved limit",
            )
        )
    bar_svg = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>#{}: {} s ({})</title></rect>',
        bars,
    )
    tick_rows = []
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        y = TOP + plot_h * (1 - fraction)
        tick_rows.append(
            (LEFT, WIDTH - RIGHT, f"{y:.1f}", f"{y:.1f}", LEFT - 4, f"{y + 4:.1f}", round(ceiling * fraction))
        )
    ticks = format_html_join(
        "",
        '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>'
        '<text x="{}" y="{}" text-anchor="end" font-size="11" fill="#666">{} s</text>',
        tick_rows,
    )
    firsts = [s for launch, s in points if launch.known_limit is None]
    saved = [s for launch, s in points if launch.known_limit is not None]
    medians = format_html_join(
        "",
        '<li class="ttr-median">{}</li>',
        (
            (text,)
            for text in (
                f"first detection: median {median(firsts):.0f} s over {len(firsts)}" if firsts else "",
                f"saved limit: median {median(saved):.0f} s over {len(saved)}" if saved else "",
            )
            if text
        ),
    )
    return format_html(
        '<svg class="ttr-chart" viewBox="0 0 {w} {h}" width="100%" role="img" '
        'aria-label="Time to ready per launch">{ticks}{bars}'
        '<text x="{left}" y="{base}" font-size="11" fill="#666">oldest</text>'
        '<text x="{right}" y="{base}" font-size="11" fill="#666" text-anchor="end">newest</text>'
        "</svg>"
        # One item per colour, each kept whole: on a narrow screen the items wrap, not their words.
        '<ul class="ttr-legend"><li><span class="swatch" style="background:{first}"></span>first detection '
        '(no saved limit)</li><li><span class="swatch" style="background:{saved}"></span>saved limit</li>'
        "{medians}</ul>",
        w=WIDTH,
        h=HEIGHT,
        ticks=ticks,
        bars=bar_svg,
        left=LEFT,
        right=WIDTH - RIGHT,
        base=HEIGHT - 8,
        first=FIRST_COLOUR,
        saved=SAVED_COLOUR,
        medians=medians,
    )
