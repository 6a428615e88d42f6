"""Arrow values built from NumPy and Python ones without pyarrow's conversion.

pyarrow converts a Python or NumPy value (``pa.array``, ``pa.scalar``, a Python value handed
to a compute function) only after asking whether it is a pandas object, and the first
such question imports pandas: 0.3 s of CPU for an import of a clean file, which needs pandas
nowhere. The steps every batch of such a file takes build their values here, from buffers;
``tests/test_import.py`` checks that importing a clean file leaves pandas unloaded. Paths
that repair messy values still use ``pa.array``: they cost far more than the import of
pandas.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def falses(n: int) -> pa.Array:
    """``n`` false values."""
    return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bytes((n + 7) // 8))])


def booleans(values: np.ndarray) -> pa.Array:
    """A NumPy array of booleans as Arrow (whose booleans are bits).

    >>> booleans(np.array([True, False, True])).to_pylist()
    [True, False, True]
    """
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def false_where_null(mask: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``mask`` with its nulls false (``pc.fill_null(mask, False)``): null AND false is
    false in Kleene logic, and a value AND true is the value.

    >>> false_where_null(pa.array([True, None, False])).to_pylist()
    [True, False, False]
    """
    return pc.and_kleene(mask, pc.is_valid(mask))


def int64s(values: np.ndarray) -> pa.Array:
    """A NumPy array of whole numbers as Arrow int64 (shares the memory when it can)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def text_scalar(value: str, type_: pa.DataType) -> pa.Scalar:
    """``value`` as a scalar of ``type_``, cast from its text (a column's default).

    >>> text_scalar("paid", pa.string()).as_py()
    'paid'
    """
    data = value.encode()
    offsets = np.array([0, len(data)], dtype=np.int32)
    text = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(offsets),
                                                  pa.py_buffer(data)])
    return text.cast(type_)[0]
