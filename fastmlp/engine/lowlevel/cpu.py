"""A CPU hint for compiled spin loops, emitted as an LLVM intrinsic (Numba has none).

:func:`cpu_relax` is the x86 ``pause`` instruction, for spin-wait loops (it saves power and tells
the core a spin is running); nothing on other architectures.
"""

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")   # pause here, MXCSR in fpenv


@intrinsic
def cpu_relax(typingctx):
    """The x86 ``pause`` hint inside a spin loop (nothing elsewhere)."""
    def codegen(context, builder, signature, args):
        if X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen

