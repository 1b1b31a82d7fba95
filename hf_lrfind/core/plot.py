"""Loss-vs-learning-rate plot of a result. matplotlib is imported here only, when a plot is asked for."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .suggest import STOP_REASONS, SUGGESTERS, TROUGH_HALF_WIDTH, centered_mean, prepare_curve, pretrained_fit

if TYPE_CHECKING:
    import matplotlib.figure

    from .result import LRFinderResult

_MARKERS = {"trough": "D", "valley": "o", "slide": "s", "steep": "^", "minimum": "v", "probe": "P", "pretrained": "X"}


def _distinct_groups(result: LRFinderResult) -> dict[str, list[str]]:
    """
    One panel per distinct curve: each group that gets a panel, with the groups whose losses are the same curve (a
    joint sweep at fixed ratios, such as layer decay, records one curve for all its groups on scaled lr axes).
    """
    panels: dict[str, list[str]] = {}
    for g in result.groups:
        same = next((k for k in panels if result.losses[g] == result.losses[k]), None)
        if same is None:
            panels[g] = [g]
        else:
            panels[same].append(g)
    return panels


def _y_limits(smoothed: np.ndarray, raw: np.ndarray, marked: list[float]) -> tuple[float, float] | None:
    """Limits that show the smoothed curve's start, the lowest points of the smoothed and the raw loss, and every
    marker, not the diverging tail."""
    finite = smoothed[np.isfinite(smoothed)]
    if len(finite) < 2:
        return None
    lows = [float(np.min(raw[np.isfinite(raw)]))] if np.isfinite(raw).any() else []
    keep = [float(finite[0]), float(finite.min()), *lows, *(y for y in marked if np.isfinite(y))]
    lo, hi = min(keep), max(keep)
    span = max(hi - lo, 0.02 * abs(hi), 1e-6)
    return lo - 0.1 * span, hi + 0.5 * span


def plot_result(
    result: LRFinderResult,
    path: str | os.PathLike | None = None,
    ax: Any = None,
    *,
    show_raw: bool = True,
    method: str | None = None,
) -> matplotlib.figure.Figure:
    """
    Plot loss against learning rate (log x axis for an exponential sweep): raw loss faint (the mean of the sweeps),
    fastai's EMA bold, the centred mean `trough` reads dashed (and the parabola `pretrained` fits, where it ran,
    dash-dotted), one marker per suggestion, at the rate it suggests on the curve it reads, with its value in the
    legend. The rule in use (`method`, by default the group's default rule, which `result.suggestion()` returns) is
    marked larger, with a vertical line at its rate; on a panel shared by groups read with different rules, each
    group's, named. The centred mean is drawn over the points `trough` reads (the prepared curve: the first and last
    points skipped), with the bottom it found. The y limits show the start, the bottoms of the smoothed and the raw
    loss, and every marker, not the diverging tail. Groups that share one curve share one panel. Never calls
    `plt.show()`.

    Args:
        result ([`LRFinderResult`]): the result to plot.
        path (`str`, *optional*): where to save a PNG.
        ax (`matplotlib.axes.Axes` or a sequence of them, *optional*): axes to draw on, one per panel.
        show_raw (`bool`, *optional*, defaults to `True`): also draw the raw loss.
        method (`str`, *optional*): the rule to mark as the one in use; defaults to each group's default rule.

    Returns:
        `matplotlib.figure.Figure`: the figure drawn on.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("Plotting needs matplotlib: pip install matplotlib") from e

    panels = _distinct_groups(result)
    groups = list(panels)
    if ax is None:
        # A bare Figure, not pyplot: no global state, no backend switch, nothing shown.
        fig = Figure(figsize=(6 * len(groups), 4.5))
        axes = fig.subplots(1, len(groups), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        if len(axes) != len(groups):
            raise ValueError(f"This result needs {len(groups)} axes (groups {groups}); {len(axes)} were given.")
        fig = axes[0].figure
    meta = result.metadata
    skips = {
        "num_steps": meta.get("num_steps"),
        "skip_start": meta.get("skip_start"),
        "skip_end": meta.get("skip_end", 5),
    }
    for a, group in zip(axes, groups):
        lrs = np.asarray(result.lrs[group], dtype=float)
        raw = np.asarray(result.losses[group], dtype=float)
        if show_raw:
            a.plot(lrs, raw, color="C0", alpha=0.3, linewidth=1, label="raw loss")
        smoothed = np.asarray(result.smoothed_losses[group], dtype=float)
        a.plot(lrs, smoothed, color="C0", linewidth=2, label="smoothed loss (EMA)")
        # What trough reads: the centred mean of the prepared raw curve (no lag, unlike the EMA), and its bottom.
        read_lrs, read = prepare_curve(lrs, raw, **skips)
        centred = centered_mean(read, TROUGH_HALF_WIDTH)
        marked: list[float] = []
        if len(centred):
            bottom = int(np.argmin(centred))
            a.plot(read_lrs, centred, color="C0", linestyle="--", linewidth=1, label="centred mean (trough reads)")
            a.plot([read_lrs[bottom]], [centred[bottom]], linestyle="none", marker="|", markersize=14, color="C0")
            marked.append(float(centred[bottom]))
        fit = pretrained_fit(read_lrs, read) if result.suggestions[group].get("pretrained") is not None else None
        if fit is not None:  # what pretrained reads: the vertex of this parabola, at a sixth
            a.plot(*fit, color="black", linestyle="-.", linewidth=1.5, label="parabola fit (pretrained reads)")
        used: dict[str, list[str]] = {}  # the rule in use -> the panel's groups it is used for
        for g in panels[group]:
            used.setdefault(method or result.default_rule(g), []).append(g)
        for i, (rule, lr) in enumerate(result.suggestions[group].items()):
            if lr is None:
                continue
            # drawn at the rate it suggests, on the curve it reads
            raw_rule = getattr(SUGGESTERS.get(rule), "uses_raw_losses", False) and len(centred)
            x, curve = (read_lrs, centred) if raw_rule else (lrs, smoothed)
            y = float(np.interp(lr, x[: len(curve)], curve))
            marked.append(y)
            style = {"marker": _MARKERS.get(rule, "x"), "color": f"C{i + 1}", "linestyle": "none"}
            if rule in used:  # the rule in use: by default what result.suggestion() returns
                a.axvline(lr, color=f"C{i + 1}", linestyle=":", linewidth=1.5)
                # a panel shared by groups read with different rules (a split sweep's body and adapters) names them
                whose = f" for {', '.join(used[rule])}" if len(used) > 1 else ""
                label = f"{rule}: {lr:.2e} ({'in use' if method else 'default'}{whose})"
                a.plot([lr], [y], markersize=12, markeredgecolor="black", label=label, **style)
            else:
                a.plot([lr], [y], markersize=7, label=f"{rule}: {lr:.2e}", **style)
        limits = _y_limits(smoothed, raw, marked)
        if limits is not None:
            a.set_ylim(*limits)
        a.set_xscale("log" if result.metadata.get("mode", "exp") == "exp" else "linear")
        a.set_xlabel("learning rate" + (f" of {group}" if len(panels[group]) > 1 else ""))
        a.set_ylabel("loss")
        same = panels[group][1:]
        stop = result.stop_reason.get(group, "")
        title = group if len(groups) > 1 or same else f"LR range test: {STOP_REASONS.get(stop, stop)}"
        if same:
            title += f" (the same curve for {', '.join(same)}, at their fixed ratios)"
        a.set_title(title, fontsize="medium")
        a.legend(fontsize="small")
    fig.tight_layout()
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig
