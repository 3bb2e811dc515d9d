"""Contact sheets: a labelled grid of face images saved as one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from torch import Tensor

from facecat.core.checkpoints import atomic_write


def save_contact_sheet(
    grid: Sequence[Sequence[Tensor]],
    path: str | Path,
    *,
    column_labels: Sequence[str],
    row_labels: Sequence[str] | None = None,
    title: str = "",
    cell_inches: float = 1.1,
) -> Path:
    """Save a grid of images (rows x columns) with column and row labels.

    Args:
        grid: rows of (3, H, W) images in [0, 1].
        path: output PNG (written atomically).
        column_labels: one label per column.
        row_labels: one label per row (optional).
        title: figure title.
        cell_inches: size of one cell.

    Returns:
        The written path.
    """
    rows, columns = len(grid), len(column_labels)
    if any(len(row) != columns for row in grid):
        raise ValueError(f"every row needs {columns} images (one per column label)")
    figure = Figure(figsize=(columns * cell_inches, rows * cell_inches + 0.4))
    axes = figure.subplots(rows, columns, squeeze=False)
    for r, row in enumerate(grid):
        for c, image in enumerate(row):
            axis = axes[r][c]
            axis.imshow(image.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy())
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(column_labels[c].replace("_", "\n", 1), fontsize=7)
            if c == 0 and row_labels is not None:
                axis.set_ylabel(row_labels[r], fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
    return path
