"""Comparing edits at matched strength: locality figures read off each run's recorded curve at the same
target colour error.

A run's curve is a list of points recorded at regular steps of its edit, in step order; each point holds the
target's colour error (distance of the target's mean colour to the requested colour; it falls as the edit
takes hold) and locality figures (PSNR outside the target, each non-target object's colour change, ...).
A method that edits less keeps more of the rest for free, so methods are compared where their targets are
equally far from the requested colour:

- a run's *best level* is the lowest target colour error its curve reaches;
- the *matched level* of a set of runs is the weaker method's best level (the highest of the best levels):
  every run reaches it;
- a figure at a level is interpolated linearly along the curve at its FIRST crossing of that level (an edit
  can overshoot and come back; the first time it gets there is what it cost to get there). Figures in dB
  (keys ending ``_db``, e.g. PSNR) are interpolated through their mean squared error: a curve's first point
  (nothing edited yet) sits at the PSNR cap, and a straight line in dB from there would be meaningless.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from relevance_nerf2nerf.errors import InvalidInputError

ERROR = "target_colour_error"
"""Key of the target colour error in every curve point."""
DECIBELS = "_db"
"""Figures whose key ends so are in dB (10 log10 of a ratio) and are interpolated through the ratio."""


def flat_figures(point: Mapping) -> dict[str, float]:
    """The numeric figures of one curve point, nested dicts flattened as ``outer/inner`` (e.g. each
    non-target object's colour change as ``non_target_colour_change/sphere``).

    Args:
        point (Mapping): one recorded curve point.
    """
    figures: dict[str, float] = {}
    for key, value in point.items():
        if isinstance(value, Mapping):
            for inner, number in flat_figures(value).items():
                figures[f"{key}/{inner}"] = number
        elif isinstance(value, int | float) and not isinstance(value, bool):
            figures[key] = float(value)
    return figures


def best_level(curve: Sequence[Mapping]) -> float:
    """The lowest target colour error the run's curve reaches.

    Args:
        curve (Sequence[Mapping]): curve points in step order, each with ``target_colour_error``.
    """
    if not curve:
        raise InvalidInputError("an empty curve has no target colour error")
    return min(float(point[ERROR]) for point in curve)


def matched_level(curves: Mapping[str, Sequence[Mapping]]) -> float:
    """The weaker method's best level: the highest of the runs' best levels (every run reaches it).

    Args:
        curves (Mapping[str, Sequence[Mapping]]): method name -> its curve.
    """
    if not curves:
        raise InvalidInputError("no curves to match")
    return max(best_level(curve) for curve in curves.values())


def figures_at_level(curve: Sequence[Mapping], level: float) -> dict[str, float] | None:
    """Every figure of the curve at target colour error ``level``, interpolated linearly between the two
    points of the curve's first crossing of ``level`` (None if the curve never gets down to it).

    A curve that starts at or below ``level`` crosses it at its first point. Figures missing from either point
    of the crossing are left out.

    Args:
        curve (Sequence[Mapping]): curve points in step order, each with ``target_colour_error``.
        level (float): the target colour error to read the figures at.
    """
    points = [flat_figures(point) for point in curve]
    if not points:
        raise InvalidInputError("an empty curve has no target colour error")
    if points[0][ERROR] <= level:
        return points[0]
    for previous, current in zip(points, points[1:], strict=False):
        if current[ERROR] <= level:  # the first crossing: previous is above the level, current at or below
            weight = (previous[ERROR] - level) / (previous[ERROR] - current[ERROR])
            shared = previous.keys() & current.keys()
            return {k: _interpolate(k, previous[k], current[k], weight) for k in sorted(shared)}
    return None


def _interpolate(key: str, start: float, end: float, weight: float) -> float:
    """``start`` + ``weight`` (``end`` - ``start``); for a dB figure, the same on 10^(-dB / 10) (the MSE of a
    PSNR), converted back."""
    if not key.endswith(DECIBELS):
        return start + weight * (end - start)
    low, high = 10 ** (-start / 10), 10 ** (-end / 10)
    return -10 * math.log10(low + weight * (high - low))


def compare_at_matched_strength(curves: Mapping[str, Sequence[Mapping]]) -> dict:
    """Each run's figures at the matched level (see the module docstring), with each run's best level.

    Args:
        curves (Mapping[str, Sequence[Mapping]]): method name -> its curve (points in step order).

    Returns:
        ``{"target_colour_error": level, "best_levels": {method: level}, "methods": {method: figures}}``.
    """
    level = matched_level(curves)
    figures = {}
    for method, curve in curves.items():
        at_level = figures_at_level(curve, level)
        assert at_level is not None  # every curve reaches the weaker method's best level
        figures[method] = at_level
    return {
        ERROR: level,
        "best_levels": {method: best_level(curve) for method, curve in curves.items()},
        "methods": figures,
    }


FIGURES = (
    ("psnr_outside_target_db", "PSNR outside the target (dB)"),
    ("mean_non_target_colour_change", "mean non-target colour change"),
)
"""Locality figures plotted against the target colour error: (curve point key, axis label)."""


def pooled_curve(curves: Sequence[Sequence[Mapping]]) -> list[dict[str, float]]:
    """Point-by-point mean of curves recorded on the same schedule (cut to the shortest), over the figures
    every curve has.

    Args:
        curves (Sequence[Sequence[Mapping]]): one method's curves, one per scene.
    """
    length = min(len(curve) for curve in curves)
    pooled = []
    for i in range(length):
        points = [flat_figures(curve[i]) for curve in curves]
        shared = set.intersection(*(set(p) for p in points))
        pooled.append({k: sum(p[k] for p in points) / len(points) for k in sorted(shared)})
    return pooled


def plot_curves(
    curves: Mapping[str, Mapping[str, Sequence[Mapping]]],
    path,
    single_points: Mapping[str, Mapping[str, Mapping]] | None = None,
    figures: Sequence[tuple[str, str]] = FIGURES,
):
    """Plot each locality figure against the target colour error, one line per method, one column per scene
    and a last column pooled over scenes (``pooled_curve``); methods without a curve (``single_points``,
    e.g. per-frame IP2P) are single markers. The x axis is inverted: the edit gets stronger to the right.
    Points at the PSNR cap (nothing changed yet, e.g. a curve's first point) are left out of dB rows.

    Args:
        curves (Mapping): scene label -> method -> curve (points in step order).
        path (str | Path): PNG file to write.
        single_points (Mapping | None, default None): scene label -> method -> one point with the same keys.
        figures (Sequence[tuple[str, str]], default FIGURES): (point key, axis label) per row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single_points = single_points or {}
    scenes = list(curves)
    methods = list(dict.fromkeys(m for scene in scenes for m in curves[scene]))
    extra = list(dict.fromkeys(m for scene in scenes for m in single_points.get(scene, {})))
    columns = [*scenes, "pooled over scenes"]
    figure, axes = plt.subplots(len(figures), len(columns), figsize=(3.2 * len(columns), 2.8 * len(figures)),
                                dpi=110, squeeze=False)  # fmt: skip
    colours = {m: f"C{i}" for i, m in enumerate([*methods, *extra])}
    for col, scene in enumerate(columns):
        if scene in curves:
            lines = {m: [flat_figures(p) for p in curves[scene][m]] for m in curves[scene]}
            points = {m: flat_figures(p) for m, p in single_points.get(scene, {}).items()}
        else:
            lines = {m: pooled_curve([curves[s][m] for s in scenes if m in curves[s]]) for m in methods}
            points = {
                m: {k: sum(v) / len(v) for k, v in _columns([single_points[s][m] for s in scenes
                                                             if m in single_points.get(s, {})]).items()}
                for m in extra
            }  # fmt: skip
        for row, (key, label) in enumerate(figures):
            axis = axes[row][col]
            for method, line in lines.items():
                kept = [p for p in line if key in p and ERROR in p and not _capped(key, p[key])]
                axis.plot([p[ERROR] for p in kept], [p[key] for p in kept], marker=".", color=colours[method],
                          label=method)  # fmt: skip
            for method, point in points.items():
                if key in point and ERROR in point:
                    axis.plot(point[ERROR], point[key], marker="*", markersize=10, linestyle="none",
                              color=colours[method], label=method)  # fmt: skip
            axis.invert_xaxis()
            axis.set_xlabel("target colour error", fontsize=7)
            axis.set_ylabel(label, fontsize=7)
            axis.tick_params(labelsize=6)
            if row == 0:
                axis.set_title(scene, fontsize=7)
    axes[0][-1].legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _capped(key: str, value: float) -> bool:
    from relevance_nerf2nerf.evaluation.metrics import MAX_PSNR

    return key.endswith(DECIBELS) and value >= MAX_PSNR


def _columns(points: Sequence[Mapping]) -> dict[str, list[float]]:
    """Figures shared by every point, as lists (for averaging single points over scenes)."""
    flat = [flat_figures(p) for p in points]
    if not flat:
        return {}
    shared = set.intersection(*(set(p) for p in flat))
    return {k: [p[k] for p in flat] for k in shared}
