"""A software prefetch for the compiled kernels (numba, optional).

``prefetch(array, index)`` asks the CPU to bring the cache line of ``array[index]`` (a
1-d array) towards its caches and returns at once: it changes no value, never faults
(an index past the end is allowed) and lets a kernel start the memory reads of its
next tile while it computes the current one. Format 3.x's residual streams are
frame-major, so a tile of points reads each of its rows from a different place: 128
short reads per tile that the hardware prefetchers do not follow (measured: the
residual gather alone 10.8 ms per 128-row chunk of 13,718 points, 6.3 ms with this; a
sequential read of the same bytes 0.6 ms).

It is LLVM's ``llvm.prefetch`` (read, high locality, data cache). Where this numba or
its LLVM cannot emit it, ``prefetch`` is a compiled no-op instead: the kernels compute
the same values, only without the head start.

This module imports numba: only the kernel factories import it (kernels call
``_prefetch.prefetch`` through the module, which numba's on-disk cache keys by name;
an intrinsic held in a closure would change the cache key in every process).
"""

import numba
import numpy as np

__all__ = ["prefetch"]


def _build():
    """The ``llvm.prefetch`` intrinsic for njit code; raises where this numba cannot build it."""
    from llvmlite import binding, ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    # opaque pointers from LLVM 15 on: the intrinsic's name mangles the pointer type
    name = "llvm.prefetch.p0" if binding.llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"

    @intrinsic
    def llvm_prefetch(typingctx, array, index):
        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            view = context.make_array(array_type)(context, builder, args[0])
            pointer = cgutils.get_item_pointer(context, builder, array_type, view, [args[1]], wraparound=False)
            byte_pointer, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            signature_ir = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
            function = cgutils.get_or_insert_function(builder.module, signature_ir, name)
            flags = (ir.Constant(i32, v) for v in (0, 3, 1))  # read, high locality, data cache
            builder.call(function, [builder.bitcast(pointer, byte_pointer), *flags])
            return context.get_dummy_value()

        return numba.types.void(array, index), codegen

    return llvm_prefetch


def _no_prefetch(array, index):
    pass


try:
    _candidate = _build()
except Exception:  # a numba or LLVM without it: same values, no head start
    _candidate = None


@numba.njit(cache=True)  # a module global, not a closure: cached on disk like the kernels
def _check(a):
    _candidate(a, 0)
    _candidate(a, a.size + 4096)  # past the end: a hint, never a fault
    return a[0]


def _choose():
    if _candidate is not None:
        try:
            _check(np.ones(1, np.int16))
            return _candidate
        except Exception:  # LLVM rejected it when compiling
            pass
    return numba.njit(inline="always")(_no_prefetch)


#: ``prefetch(array, index)`` for njit kernels (see the module docstring).
prefetch = _choose()
