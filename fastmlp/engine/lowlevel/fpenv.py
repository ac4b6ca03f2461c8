"""Flush denormals to zero inside compiled calls (x86 FTZ and DAZ bits of MXCSR).

Optimizer state of weights whose gradient has become zero decays geometrically (momentum
``v *= 0.9``, Adam's ``m *= 0.9``) into subnormal numbers, and arithmetic on subnormals is
about 100x slower on x86 (docs/performance.md, "Denormals"). Values below the smallest normal number (1.2e-38 in
float32) are far below anything that can change a weight, so compiled calls run with
flush-to-zero (results) and denormals-are-zero (inputs) set, and put the caller's setting back
before they return. Each thread has its own MXCSR, so every parallel part sets it too.
On other architectures these calls do nothing.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .cpu import X86

FTZ_DAZ = 0x8040                                      # MXCSR bit 15 (FTZ) and bit 6 (DAZ)


def _mxcsr_call(builder, name, slot):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [builder.bitcast(slot, ir.IntType(8).as_pointer())])


@intrinsic
def flush_denormals(typingctx):
    """Set FTZ and DAZ for this thread; returns the previous MXCSR (0 off x86)."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        if not X86:
            return ir.Constant(i32, 0)
        slot = cgutils.alloca_once(builder, i32)
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        previous = builder.load(slot)
        builder.store(builder.or_(previous, ir.Constant(i32, FTZ_DAZ)), slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return previous

    return types.uint32(), codegen


@intrinsic
def restore_fpenv(typingctx, previous):
    """Put back the MXCSR that :func:`flush_denormals` returned."""
    def codegen(context, builder, signature, args):
        if X86:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(args[0], slot)
            _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(types.uint32), codegen
