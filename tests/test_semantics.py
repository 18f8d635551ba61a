"""cimc.semantics: rounding, saturation, exact products and convolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cimc import semantics as sem
from cimc.dialects.cimq import QuantType


def test_quantize_rounds_half_to_even_and_saturates() -> None:
    qt = QuantType(4, False, 0.5)
    x = np.array([0.25, 0.75, 1.25, -3.0, 100.0, 7.4], np.float32)
    # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2 (half to even), negative saturates at 0, large at 15
    assert sem.quantize(x, qt).tolist() == [0, 2, 2, 0, 15, 15]


def test_quantize_narrow_signed_range() -> None:
    qt = QuantType(4, True, 1.0, narrow=True)
    assert (qt.qmin, qt.qmax) == (-7, 7)
    assert sem.quantize(np.array([-100.0, 100.0], np.float32), qt).tolist() == [-7, 7]
    wide = QuantType(4, True, 1.0)
    assert sem.quantize(np.array([-100.0, 100.0], np.float32), wide).tolist() == [-8, 7]


def test_quantize_zero_point_and_per_channel() -> None:
    qt = QuantType(8, False, [0.5, 2.0], axis=1, zero_point=10)
    x = np.array([[1.0, 4.0]], np.float32)
    assert sem.quantize(x, qt).tolist() == [[12, 12]]
    assert np.allclose(sem.dequantize(np.array([[12, 12]]), qt), x)


def test_dequantize_accumulator_uses_exact_product() -> None:
    qt = QuantType(32, True, 0.1)
    acc = np.array([2**30 + 1], np.int64)
    expected = np.float32(np.float64(2**30 + 1) * 0.1)
    assert sem.dequantize(acc, qt)[0] == expected


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6), st.integers(1, 40), st.integers(1, 7), st.integers(0, 2**31 - 1)
)
def test_exact_matmul_equals_integer_product(m: int, k: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 256, size=(m, k))
    b = rng.integers(-127, 128, size=(k, n))
    assert np.array_equal(sem.exact_matmul(a, b), a.astype(object).dot(b.astype(object)).astype(np.int64))


def test_exact_matmul_large_values_fall_back_to_integers() -> None:
    a = np.full((1, 4), 2**40, np.int64)
    b = np.full((4, 1), 2**12, np.int64)
    assert sem.exact_matmul(a, b)[0, 0] == 4 * 2**52


def _conv_reference(x, w, strides, pads, dil, group):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n, o, ho, wo), np.int64)
    og = o // group
    for oc in range(o):
        g = oc // og
        for yy in range(ho):
            for xx in range(wo):
                for ci in range(cg):
                    for ky in range(kh):
                        for kx in range(kw):
                            out[:, oc, yy, xx] += (
                                xp[:, g * cg + ci, yy * strides[0] + ky * dil[0], xx * strides[1] + kx * dil[1]]
                                * w[oc, ci, ky, kx]
                            )
    return out


@pytest.mark.parametrize(
    "group,strides,pads,dil",
    [(1, (1, 1), (1, 1, 1, 1), (1, 1)), (2, (2, 1), (0, 1, 2, 0), (1, 2)), (4, (1, 2), (1, 0, 0, 1), (2, 1))],
)
def test_conv2d_int_matches_direct_loops(group, strides, pads, dil) -> None:
    rng = np.random.default_rng(group)
    x = rng.integers(0, 16, size=(2, 4, 7, 6))
    w = rng.integers(-7, 8, size=(8, 4 // group, 3, 2))
    got = sem.conv2d_int(x, w, strides, pads, dil, group)
    assert np.array_equal(got, _conv_reference(x, w, strides, pads, dil, group))


def test_quantize_saturates_values_beyond_int64() -> None:
    qt = QuantType(8, True, 0.1)
    x = np.array([1e30, -1e30, 3e38], np.float32)
    assert sem.quantize(x, qt).tolist() == [127, -128, 127]
    assert int(sem.quantize(np.float32(1e30), qt)) == 127
    shifted = QuantType(8, False, 0.5, zero_point=10)
    assert sem.quantize(np.array([-1e30, 1e30, 0.0], np.float32), shifted).tolist() == [0, 255, 10]


def test_dequantize_constants_with_zero_point_do_not_wrap() -> None:
    """uint8 / int8 constants minus their zero point are computed in int64 (no wrap-around)."""
    qt = QuantType(8, False, 0.5, zero_point=100)
    out = sem.dequantize_linear(np.array([10, 255, 100], np.uint8), qt)
    np.testing.assert_array_equal(out, np.array([-45.0, 77.5, 0.0], np.float32))
    assert out.dtype == np.float32
