"""What the intrinsics here share: arguments that travel as tuples of integers."""

from numba import types


def int64s(context, builder, tuple_type, value):
    """The elements of a tuple argument (any integer types) as LLVM int64 values."""
    return [context.cast(builder, builder.extract_value(value, i), t, types.int64)
            for i, t in enumerate(tuple_type)]
