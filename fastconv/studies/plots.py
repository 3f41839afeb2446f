"""Matplotlib for the studies: the headless backend, and the figure styling they share.

Every figure is written at :data:`DPI` with the fonts of :data:`STYLE`, sized so that the README and the
report show it at its natural width (about 1000 pixels) with text as large as the page's own.  Legends go
beside or below the axes (:func:`legend_below`, :func:`legend_right`), never over the data.
"""
import sys

__all__ = ["pyplot", "save_figure", "legend_below", "legend_right", "DPI", "GRID_ALPHA", "STYLE",
           "NO_MATPLOTLIB", "SEED_CNN"]

DPI = 100  # PNG resolution of every study figure
GRID_ALPHA = 0.3  # grid lines behind the data
STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
         "ytick.labelsize": 10, "legend.fontsize": 10, "figure.titlesize": 13}
# how a figure names seed 000's network, once per figure, so that no reader needs the seed texts
SEED_CNN = "seed 000's CNN (conv 16@8x8, conv 8@4x4 stride 2, dense 10)"
NO_MATPLOTLIB = ("fastconv study {name}: matplotlib is not installed, so the plots were skipped "
                 "(the tables and data files are written). Install it for the plots: "
                 "pip install 'fastconv[study]'  (or: pip install matplotlib)")


def pyplot(name=None):
    """``matplotlib.pyplot`` on the non-interactive Agg backend with :data:`STYLE`, or None when matplotlib is
    not installed; then it says so on stderr, naming the study ``name``, and how to get the plots."""
    try:
        import matplotlib
    except ImportError:
        print(NO_MATPLOTLIB.format(name=name or "(a study)"), file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def legend_below(fig, axes, ncol=None, **kwargs):
    """One legend for ``fig`` below its panels (the handles of the first of ``axes`` that has labels)."""
    axes = list(getattr(axes, "flat", [axes]))
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            break
    return fig.legend(handles, labels, loc="lower center", ncol=ncol or min(len(labels), 5), frameon=False,
                      bbox_to_anchor=(0.5, 0.0), **kwargs)


def legend_right(ax, **kwargs):
    """``ax``'s legend outside the axes, to their right."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False, **kwargs)


def save_figure(fig, path, legend_rows=0):
    """Lay ``fig`` out, write it to ``path`` as a PNG at :data:`DPI` and close it.

    ``legend_rows``: rows of a :func:`legend_below` legend to keep free at the bottom of the figure.
    """
    import matplotlib.pyplot as plt

    if legend_rows:
        bottom = (0.1 + 0.3 * legend_rows) / fig.get_size_inches()[1]
        fig.tight_layout(rect=(0, bottom, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
