"""Loss-vs-learning-rate plot of a result. matplotlib is imported here only, when a plot is asked for."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import matplotlib.figure

    from .result import LRFinderResult

_MARKERS = {"trough": "D", "valley": "o", "slide": "s", "steep": "^", "minimum": "v"}


def _distinct_groups(result: LRFinderResult) -> list[str]:
    """Groups whose curves differ (in lrs or losses); identical curves share a panel."""
    keep: list[str] = []
    for g in result.groups:
        if not any(result.losses[g] == result.losses[k] and result.lrs[g] == result.lrs[k] for k in keep):
            keep.append(g)
    return keep


def plot_result(
    result: LRFinderResult, path: str | os.PathLike | None = None, ax: Any = None, *, show_raw: bool = True
) -> matplotlib.figure.Figure:
    """
    Plot loss against learning rate (log x axis for an exponential sweep): raw loss faint, smoothed loss bold, one marker per suggestion with
    its value in the legend. Groups with different curves get one panel each. Never calls `plt.show()`.

    Args:
        result ([`LRFinderResult`]): the result to plot.
        path (`str`, *optional*): where to save a PNG.
        ax (`matplotlib.axes.Axes` or a sequence of them, *optional*): axes to draw on, one per panel.
        show_raw (`bool`, *optional*, defaults to `True`): also draw the raw loss.

    Returns:
        `matplotlib.figure.Figure`: the figure drawn on.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("Plotting needs matplotlib: pip install matplotlib") from e

    groups = _distinct_groups(result)
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
    for a, group in zip(axes, groups):
        lrs = np.asarray(result.lrs[group], dtype=float)
        if show_raw:
            a.plot(lrs, result.losses[group], color="C0", alpha=0.3, linewidth=1, label="raw loss")
        smoothed = np.asarray(result.smoothed_losses[group], dtype=float)
        a.plot(lrs, smoothed, color="C0", linewidth=2, label="smoothed loss")
        for i, (method, lr) in enumerate(result.suggestions[group].items()):
            if lr is None:
                continue
            # fastai draws `minimum` at the loss minimum, not at the returned (10x lower) rate.
            x = lr * 10 if method == "minimum" else lr
            y = float(np.interp(x, lrs, smoothed))
            marker = _MARKERS.get(method, "x")
            a.plot(
                [x], [y], linestyle="none", marker=marker, markersize=8, color=f"C{i + 1}", label=f"{method}: {lr:.2e}"
            )
        finite = smoothed[np.isfinite(smoothed)]
        if len(finite) > 1 and finite[0] > finite.min():  # keep the diverging tail from flattening the curve
            span = finite[0] - finite.min()
            a.set_ylim(finite.min() - 0.1 * span, finite[0] + 0.5 * span)
        a.set_xscale("log" if result.metadata.get("mode", "exp") == "exp" else "linear")
        a.set_xlabel("learning rate")
        a.set_ylabel("loss")
        a.set_title(group if len(groups) > 1 else f"LR range test ({result.stop_reason.get(group, '')})")
        a.legend(fontsize="small")
    fig.tight_layout()
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig
