"""What the intrinsics here share: arguments that travel as tuples of integers; and a float32
made from its bits."""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def int64s(context, builder, tuple_type, value):
    """The elements of a tuple argument (any integer types) as LLVM int64 values."""
    return [context.cast(builder, builder.extract_value(value, i), t, types.int64)
            for i, t in enumerate(tuple_type)]


@intrinsic
def float32_from_bits(typingctx, bits):
    """The float32 whose 32 bits are the low 32 bits of the integer ``bits`` (a bitcast: no
    instruction, and a loop over it still vectorises)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], ir.IntType(32)) if bits.bitwidth > 32 else args[0]
        return builder.bitcast(low, ir.FloatType())

    return types.float32(bits), codegen
