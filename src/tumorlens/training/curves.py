"""Training curves (loss, accuracy, macro-F1 per epoch) from Lightning's CSV log, as CSV and PNG."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_log(metrics_csv: Path) -> pd.DataFrame | None:
    """The CSV log as it stands, or None (read before a resumed run: Lightning deletes the old file)."""
    return pd.read_csv(metrics_csv) if Path(metrics_csv).is_file() else None


def save_curves(metrics_csv: Path, out_dir: Path, earlier: pd.DataFrame | None = None) -> Path | None:
    """Per-epoch curves; `earlier` is the log of the interrupted run a resumed run continues."""
    metrics_csv = Path(metrics_csv)
    if not metrics_csv.is_file():
        return None
    log = pd.read_csv(metrics_csv)
    if "epoch" not in log:
        return None
    if earlier is not None and "epoch" in earlier:
        log = pd.concat([earlier[earlier["epoch"] < log["epoch"].min()], log], ignore_index=True)
        log.to_csv(metrics_csv, index=False)  # the whole run's log, as if never interrupted
    per_epoch = log.groupby("epoch").mean(numeric_only=True).drop(columns=["step"], errors="ignore")
    per_epoch.to_csv(Path(out_dir) / "curves.csv")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("loss", ["train_loss", "val_loss"]), ("accuracy", ["train_acc", "val_acc"]), ("macro-F1", ["val_macro_f1"])]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, (title, columns) in zip(axes, panels):
        plotted = [c for c in columns if c in per_epoch]
        for c in plotted:
            ax.plot(per_epoch.index, per_epoch[c], marker="o", label=c)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if plotted:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png = Path(out_dir) / "curves.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
