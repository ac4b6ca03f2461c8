"""CSV files of images, one per line: a label column (unless a header leaves it out) and pixels
0..255 (Kaggle's digit recognizer, Colab's mnist_train_small.csv)."""

import numpy as np

from .data import LABEL_NAMES, MAX_CLASS, DataError, Dataset, _read_bytes, _stem_name, as_float_images


def load_csv(path):
    """One image per line: a label column (unless a header leaves it out) and pixels 0..255."""
    text = _read_bytes(path)
    text = text.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n").rstrip()
    if not text:
        raise DataError(f"{path}: is empty; write one image per line, label first, e.g. "
                        f"5,0,0,...,0")
    first, _, rest = text.partition(b"\n")
    names = [cell.strip().strip(b'"').decode("utf-8", "replace") for cell in first.split(b",")]
    if len(names) < 2:
        raise DataError(f"{path}, line 1: has one column; fastmlp reads comma-separated values, "
                        f"a label and the pixels of one image per line")
    if _is_header(names):
        first_line, body = 2, rest
        label_column = next((i for i, n in enumerate(names) if n.lower() in LABEL_NAMES), None)
        if not body:
            raise DataError(f"{path}: has a header line but no data; add one image per line")
    else:
        first_line, body, label_column = 1, text, 0

    values = _parse_csv(path, body, len(names), first_line)
    if label_column is None:
        pixels, y = values, None
    else:
        pixels = np.delete(values, label_column, axis=1) if label_column else values[:, 1:]
        y = values[:, label_column]
        bad = ~((y >= 0) & (y <= MAX_CLASS)) | (y != np.round(y))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{path}, line {first_line + row}: label {y[row]:g} in column "
                            f"{label_column + 1} is not a class number 0, 1, 2, ...; "
                            f"labels must be whole numbers from 0 to {MAX_CLASS}")
        y = y.astype(np.int64)

    bad = ~((pixels >= 0) & (pixels <= 255))
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        column = int(np.argmax(bad[row]))
        if label_column is not None and column >= label_column:
            column += 1
        raise DataError(f"{path}, line {first_line + row}: pixel {values[row, column]:g} in "
                        f"column {column + 1} is outside 0..255; pixels must be intensities "
                        f"0..255 (or already scaled to 0..1)")
    return Dataset(as_float_images(pixels), y, name=_stem_name(path), source=str(path))


def _is_header(cells):
    """A first line is a header when it names a label column or is mostly non-numeric."""
    numbers = sum(_is_number(cell) for cell in cells)
    return cells[0].lower() in LABEL_NAMES or numbers < len(cells) / 2


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_csv(path, body, n_columns, first_line):
    """The numbers of the CSV lines in ``body`` as an (n_lines, n_columns) array.

    The column count of each line is checked first; the whole body is then parsed in one call,
    and only if that fails is it parsed line by line to report the bad cell.
    """
    lines = body.split(b"\n")
    counts = np.fromiter((line.count(b",") for line in lines), np.int64, len(lines)) + 1
    wrong = np.flatnonzero(counts != n_columns)
    if wrong.size:
        row = int(wrong[0])
        what = ("is empty" if not lines[row].strip()
                else f"has {counts[row]} columns but line 1 has {n_columns}")
        raise DataError(f"{path}, line {first_line + row}: {what}; every line needs the same "
                        f"number of comma-separated values")
    flat = body.replace(b"\n", b",")
    for dtype in (np.int64, np.float64):    # whole numbers, the usual case, parse 3x faster
        try:
            values = np.fromstring(flat, dtype=dtype, sep=",")
        except ValueError:
            continue
        if values.size == len(lines) * n_columns:
            return values.reshape(len(lines), n_columns)

    rows = []                               # a bad cell to find, line by line
    for number, line in enumerate(lines, start=first_line):
        try:
            row = np.fromstring(line, dtype=np.float64, sep=",")
        except ValueError:
            row = None
        if row is None or row.size != n_columns:
            cells = line.split(b",")
            for column, cell in enumerate(cells, start=1):
                if not _is_number(cell):
                    shown = cell.strip().decode("utf-8", "replace")
                    what = f"{shown[:20]!r} is not a number" if shown else "is empty"
                    raise DataError(f"{path}, line {number}: column {column} {what}; "
                                    f"every cell must be a number")
            row = np.array([float(cell) for cell in cells])
        rows.append(row)
    return np.array(rows)


# ---------------------------------------------------------------- helpers
