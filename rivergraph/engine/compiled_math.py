"""exp and log for the compiled kernels, written in arithmetic so that a loop calling them vectorises.

The C library's ``exp`` / ``log`` are calls, which stop LLVM's loop vectoriser (this machine has no vector math
library for numba); these are straight-line float64 code of the textbook kind (Cody & Waite 1980, "Software
Manual for the Elementary Functions"; Muller 2016, "Elementary Functions", ch. 11):

    exp(x) = 2^n e^r,  n = round(x / ln 2),  r = x - n ln 2 (ln 2 in two parts),  e^r by its Taylor series to r^13
             (|r| <= ln 2 / 2: truncation < 4e-18 relative); 2^n from the exponent bits.
    log(x) = e ln 2 + log(m),  x = m 2^e with m in [sqrt(1/2), sqrt(2)),  log(m) = 2 atanh(s), s = (m-1)/(m+1),
             by its series to s^23 (|s| <= 0.1716: truncation < 1e-17 relative).

``vexp_f32`` / ``vlog_f32`` are the same with the series cut for float32 states (exp to r^8, log to s^11:
truncation below 3e-10 and 2e-11 relative, 1/200 of float32's rounding; still computed in float64), for
arguments inside exp's range and positive normal numbers (the kernels' floored reference flows); NaN and inf
pass through. Measured against numpy's exp / log over 2^20 random points: exp at most 1 ulp apart on [-745, 709.7], log at
most 2 ulp on [1e-321, 1e308] (``tests/test_compiled_mc.py``). Special values as the C library: exp(NaN) = NaN, exp(x > 709.78) = inf, exp(x < -745) = 0;
log(NaN) = log(x < 0) = NaN, log(0) = -inf, log(inf) = inf (subnormal x are scaled first).
"""
from __future__ import annotations

import numpy as np

from .compiled_base import inline, numba

__all__ = ["vexp", "vlog", "vexp_f32", "vlog_f32"]

_LN2_HI = 6.93147180369123816490e-01  # ln 2 = _LN2_HI + _LN2_LO, _LN2_HI with 32 low mantissa bits zero
_LN2_LO = 1.90821492927058770002e-10
_LOG2E = 1.4426950408889634
_SQRT2 = 1.4142135623730951
_TINY = 2.2250738585072014e-308  # smallest normal float64
_HUGE = 1.7976931348623157e308

if numba is not None:
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def _bits(typingctx, x):
        """The int64 with the bits of float64 x."""
        return types.int64(types.float64), lambda context, builder, sig, args: builder.bitcast(args[0],
                                                                                             ir.IntType(64))

    @intrinsic
    def _float(typingctx, b):
        """The float64 with the bits of int64 b."""
        return types.float64(types.int64), lambda context, builder, sig, args: builder.bitcast(args[0],
                                                                                             ir.DoubleType())

    @intrinsic
    def _bits32(typingctx, x):
        """The int32 with the bits of float32 x."""
        return types.int32(types.float32), lambda context, builder, sig, args: builder.bitcast(args[0],
                                                                                             ir.IntType(32))

    @inline
    def _exp_reduce(xc):  # pragma: no cover - compiled
        """x = n ln 2 + r, |r| <= ln 2 / 2 (ln 2 in two parts): (n, r)."""
        n = np.floor(xc * _LOG2E + 0.5)
        return n, (xc - n * _LN2_HI) - n * _LN2_LO

    @inline
    def _log_split(xs):  # pragma: no cover - compiled
        """A positive normal xs = m 2^e, m in [sqrt(1/2), sqrt(2)): (e, s, s^2) with s = (m - 1)/(m + 1)."""
        b = _bits(xs)
        m = _float((b & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
        big = m > _SQRT2
        m = m * 0.5 if big else m
        s = (m - 1.0) / (m + 1.0)
        return np.float64((b >> 52) - 1023) + (1.0 if big else 0.0), s, s * s

    @inline
    def vexp(x):  # pragma: no cover - compiled
        """e^x (float64), see the module docstring."""
        xc = min(max(x, -745.2), 709.78)
        n, r = _exp_reduce(xc)
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        # 2^n as two factors, so that n down to -1075 (subnormal results) stays representable
        n1 = np.int64(n) // 2
        y = p * _float((n1 + 1023) << 52) * _float((np.int64(n) - n1 + 1023) << 52)
        return y if x == xc else (np.inf if x > 709.78 else (0.0 if x < -745.2 else x))

    @inline
    def vlog(x):  # pragma: no cover - compiled
        """Natural log of x (float64), see the module docstring."""
        sub = x < _TINY
        xs = x * 18014398509481984.0 if sub else x  # 2^54: subnormals to normal numbers
        e, s, z = _log_split(xs)
        e = e - (54.0 if sub else 0.0)
        p = 1.0 / 23.0
        p = p * z + 1.0 / 21.0
        p = p * z + 1.0 / 19.0
        p = p * z + 1.0 / 17.0
        p = p * z + 1.0 / 15.0
        p = p * z + 1.0 / 13.0
        p = p * z + 1.0 / 11.0
        p = p * z + 1.0 / 9.0
        p = p * z + 1.0 / 7.0
        p = p * z + 1.0 / 5.0
        p = p * z + 1.0 / 3.0
        lg = e * _LN2_HI + ((2.0 * s + 2.0 * s * z * p) + e * _LN2_LO)
        ok = (x > 0.0) & (x < _HUGE)
        return lg if ok else (x if x >= _HUGE else (-np.inf if x == 0.0 else np.nan))
    @inline
    def vexp_f32(x):  # pragma: no cover - compiled
        """e^x to 3e-10 relative (the module docstring), x in [-708, 709]; NaN and +-inf as exp's."""
        xc = min(max(x, -708.0), 709.0)
        n, r = _exp_reduce(xc)
        p = 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        y = p * _float((np.int64(n) + 1023) << 52)
        return y if x == xc else (np.inf if x > 709.0 else (0.0 if x < -708.0 else x))

    @inline
    def vlog_f32(x):  # pragma: no cover - compiled
        """Natural log of a positive normal x to 2e-11 relative (the module docstring); NaN, inf and x <= 0 as
        log's."""
        e, s, z = _log_split(x)
        p = 1.0 / 11.0
        p = p * z + 1.0 / 9.0
        p = p * z + 1.0 / 7.0
        p = p * z + 1.0 / 5.0
        p = p * z + 1.0 / 3.0
        lg = e * _LN2_HI + ((2.0 * s + 2.0 * s * z * p) + e * _LN2_LO)
        ok = (x >= _TINY) & (x < _HUGE)
        return lg if ok else (x if x >= _HUGE else (-np.inf if x == 0.0 else np.nan))
else:  # pragma: no cover
    vexp, vlog = vexp_f32, vlog_f32 = np.exp, np.log
