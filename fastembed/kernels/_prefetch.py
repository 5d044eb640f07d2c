"""A software-prefetch hint for numba kernels: ``prefetch_row(matrix, row)``.

The training kernel knows a step ahead which rows it will touch (the next centre, its farthest context, its
negatives), but those rows sit at random places in matrices much larger than the cache
once the universe has ~100k regions. Issuing ``prefetcht0`` for them one centre early hides most of the DRAM
latency (measured on one thread: +55% words/s on a 100k-region corpus, +19% on a 10k-region one; see
``fastembed.sgns``).

Numba has no prefetch builtin, so this is an ``@intrinsic`` that emits LLVM's ``llvm.prefetch`` once per 64-byte
line of the row. It is only a hint: no result, no fault on any address. With ``NUMBA_DISABLE_JIT=1`` it is a
no-op Python function, so the kernels still run as plain Python.
"""

from __future__ import annotations

import numba

__all__ = ["prefetch_row"]

_LINE = 64  # bytes per cache line on x86-64 and most arm64


if numba.config.DISABLE_JIT:

    def prefetch_row(matrix, row):
        """No-op stand-in when numba's JIT is disabled."""
        return None

else:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    _I8P = ir.IntType(8).as_pointer()
    _I32 = ir.IntType(32)
    # The intrinsic is overloaded on its pointer type: "p0" with opaque pointers (LLVM >= 15 in llvmlite),
    # "p0i8" with typed ones.
    _NAME = "llvm.prefetch.p0" if str(_I8P) == "ptr" else "llvm.prefetch.p0i8"

    @intrinsic
    def prefetch_row(typingctx, matrix, row):
        """Hint the CPU to bring ``matrix[row, :]`` (a C-contiguous 2-d array) into L1. Returns None."""
        if not (
            isinstance(matrix, types.Array)
            and matrix.ndim == 2
            and matrix.layout == "C"
            and isinstance(row, types.Integer)
        ):
            return None

        def codegen(context, builder, signature, args):
            aryty, rowty = signature.args
            ary = context.make_array(aryty)(context, builder, args[0])
            shape = cgutils.unpack_tuple(builder, ary.shape)
            strides = cgutils.unpack_tuple(builder, ary.strides)
            index = context.cast(builder, args[1], rowty, types.intp)
            zero = context.get_constant(types.intp, 0)
            start = cgutils.get_item_pointer2(
                context, builder, ary.data, shape, strides, aryty.layout, [index, zero], wraparound=False
            )
            base = builder.bitcast(start, _I8P)
            itemsize = context.get_abi_sizeof(context.get_data_type(aryty.dtype))
            nbytes = builder.mul(shape[1], context.get_constant(types.intp, itemsize))
            fnty = ir.FunctionType(ir.VoidType(), [_I8P, _I32, _I32, _I32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, _NAME)
            step = context.get_constant(types.intp, _LINE)
            with cgutils.for_range_slice(builder, zero, nbytes, step) as (offset, _):
                # read (0), keep in all cache levels (3), data cache (1)
                builder.call(fn, [builder.gep(base, [offset]), _I32(0), _I32(3), _I32(1)])
            return context.get_dummy_value()

        return types.void(matrix, row), codegen
