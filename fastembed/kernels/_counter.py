"""An atomic counter for numba kernels: ``fetch_add(counter, value)``.

The parallel training driver hands out blocks of cells from a shared counter, so a thread that finishes its
blocks early takes the next one instead of waiting at the end of the kernel call for a slower thread (a VM's
neighbour, a deeper block). Numba has no atomic builtin, so this is an ``@intrinsic`` that emits LLVM's
``atomicrmw add``. With ``NUMBA_DISABLE_JIT=1`` it is a plain Python function (``prange`` then runs its
iterations one after the other, so nothing races).
"""

from __future__ import annotations

import numba

__all__ = ["fetch_add"]


if numba.config.DISABLE_JIT:

    def fetch_add(counter, value):
        """``counter[0] += value``; returns the value before the addition."""
        old = counter[0]
        counter[0] = old + value
        return old

else:
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def fetch_add(typingctx, counter, value):
        """Atomically add ``value`` to ``counter[0]`` (an int64[:] array) and return the value before the
        addition (sequentially consistent)."""
        if not (
            isinstance(counter, types.Array)
            and counter.ndim == 1
            and counter.dtype == types.int64
            and isinstance(value, types.Integer)
        ):
            return None

        def codegen(context, builder, signature, args):
            aryty, valty = signature.args
            ary = context.make_array(aryty)(context, builder, args[0])
            zero = context.get_constant(types.intp, 0)
            ptr = cgutils.get_item_pointer2(
                context,
                builder,
                ary.data,
                cgutils.unpack_tuple(builder, ary.shape),
                cgutils.unpack_tuple(builder, ary.strides),
                aryty.layout,
                [zero],
                wraparound=False,
            )
            val = context.cast(builder, args[1], valty, types.int64)
            return builder.atomic_rmw("add", ptr, val, "seq_cst")

        return types.int64(counter, value), codegen
