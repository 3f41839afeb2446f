"""Matplotlib for the studies: the headless backend, and the figure styling they share."""
__all__ = ["pyplot", "save_figure", "DPI", "GRID_ALPHA"]

DPI = 90  # PNG resolution of every study figure
GRID_ALPHA = 0.3  # grid lines behind the data


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """Lay ``fig`` out tightly, write it to ``path`` as a PNG at :data:`DPI` and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
