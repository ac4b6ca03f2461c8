"""Text for the terminal: accuracy per class, a confusion matrix, images drawn in characters."""

import shutil
import sys

import numpy as np


def format_per_class(matrix, classes):
    """Accuracy per class as a text table, from a confusion matrix."""
    width = max(5, *(len(str(c)) for c in classes))
    lines = [f"{'class':>{width}}  images  correct  accuracy"]
    for c, row, hit in zip(classes, matrix, np.diag(matrix)):
        total = int(row.sum())
        accuracy = f"{hit / total:.4f}" if total else "-"
        lines.append(f"{str(c):>{width}}  {total:>6}  {int(hit):>7}  {accuracy:>8}")
    return "\n".join(lines)


def format_confusion(matrix, classes):
    """A confusion matrix as text: rows true class, columns predicted class."""
    names = [str(c) for c in classes]
    cell = max(3, *(len(n) for n in names), len(str(int(matrix.max(initial=0))))) + 1
    corner = "true\\pred"
    lines = ["confusion matrix (rows: true class, columns: predicted class)",
             f"{corner:>{len(corner)}}" + "".join(f"{n:>{cell}}" for n in names)]
    for name, row in zip(names, matrix):
        lines.append(f"{name:>{len(corner)}}" + "".join(f"{int(v):>{cell}}" for v in row))
    return "\n".join(lines)


UNICODE_RAMP = " ░▒▓█"
ASCII_RAMP = " .:-=+*#%@"


def render_image(image, ramp=UNICODE_RAMP):
    """Lines of text drawing a square image (side x side, values >= 0), two characters per
    pixel so that it looks square; each image is scaled to its own maximum."""
    image = np.clip(np.asarray(image, dtype=np.float64), 0, None)
    top = image.max()
    levels = np.zeros(image.shape, dtype=int) if top <= 0 else \
        np.rint(image / top * (len(ramp) - 1)).astype(int)
    return ["".join(ramp[v] * 2 for v in row) for row in levels]


def render_images(X, y_pred, y_true=None, columns=None, ramp=None):
    """Images side by side, as many as fit the terminal, each titled with its index, the
    prediction and the truth (marked when wrong)."""
    from .plots import image_grid

    images = image_grid(X)
    if ramp is None:
        ramp = UNICODE_RAMP if _can_print(UNICODE_RAMP) else ASCII_RAMP
    columns = columns or shutil.get_terminal_size().columns
    blocks = []
    for i, image in enumerate(images):
        titles = [f"#{i} pred {y_pred[i]}"]
        if y_true is not None:
            titles.append(f"true {y_true[i]}" + ("" if y_true[i] == y_pred[i] else " WRONG"))
        art = render_image(image, ramp)
        width = max(len(art[0]), *(len(t) for t in titles))
        blocks.append([t.ljust(width) for t in titles] + [line.ljust(width) for line in art])
    gap = "   "
    rows, row, used = [], [], 0
    for block in blocks:
        if row and used + len(gap) + len(block[0]) > columns:
            rows.append(row)
            row, used = [], 0
        used += (len(gap) if row else 0) + len(block[0])
        row.append(block)
    if row:
        rows.append(row)
    return "\n\n".join("\n".join(gap.join(b[k] for b in row).rstrip() for k in range(len(row[0])))
                       for row in rows)


def _can_print(text):
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True
