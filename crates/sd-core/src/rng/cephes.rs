//! Scalar replicas of the single-precision `log` and `sincos` that PyTorch's AVX2 `normal_` kernel uses
//! (`log256_ps` / `sincos256_ps` from `avx_mathfun.h`, cephes polynomials).
//!
//! They are not the most accurate functions: they are the ones torch's x86-64 build computes, and every
//! operation is done in the same order and with the same rounding, so results agree bit for bit. Torch's
//! build lets GCC contract `a * b + c` into fused multiply-adds; which pairs it fused was read off the
//! disassembly of `libtorch_cpu.so` (2.15) and is mirrored with `mul_add` below. Any other fusing, or
//! none, changes roughly one value in a hundred by 1-2 ulp.

/// Cephes constants are written as double literals and narrowed to float in the C source; narrowing a
/// parsed f64 reproduces that double rounding exactly. (Literals are shortened where clippy asks; they
/// parse to the same f64.)
const fn narrow(value: f64) -> f32 {
    value as f32
}

const SQRT_HALF: f32 = narrow(std::f64::consts::FRAC_1_SQRT_2);
const LOG_POLY: [f32; 9] = [
    narrow(7.037_683_629_2e-2),
    narrow(-1.151_461_031_0e-1),
    narrow(1.167_699_874_0e-1),
    narrow(-1.242_014_084_6e-1),
    narrow(1.424_932_278_7e-1),
    narrow(-1.666_805_766_5e-1),
    narrow(2.000_071_476_5e-1),
    narrow(-2.499_999_399_3e-1),
    narrow(3.333_333_117_4e-1),
];
const LOG_Q1: f32 = narrow(-2.121_944_40e-4);
const LOG_Q2: f32 = narrow(0.693_359_375);

const FOUR_OVER_PI: f32 = narrow(1.273_239_544_735_16);
const MINUS_DP1: f32 = narrow(-0.785_156_25);
const MINUS_DP2: f32 = narrow(-2.418_756_484_985_351_6e-4);
const MINUS_DP3: f32 = narrow(-3.774_894_977_445_941e-8);
const SIN_POLY: [f32; 3] = [
    narrow(-1.951_529_589_1e-4),
    narrow(8.332_160_873_6e-3),
    narrow(-1.666_665_461_1e-1),
];
const COS_POLY: [f32; 3] = [
    narrow(2.443_315_711_809_948e-5),
    narrow(-1.388_731_625_493_765e-3),
    narrow(4.166_664_568_298_827e-2),
];

const SIGN_BIT: u32 = 0x8000_0000;
const EXPONENT_BITS: u32 = 0x7f80_0000;
const SMALLEST_NORMAL: f32 = f32::MIN_POSITIVE;

/// Natural log for `x > 0` (torch only calls it on `1 - u`, `u` in `[0, 1)`, so `x` is in `(0, 1]`).
pub(crate) fn log(x: f32) -> f32 {
    let x = x.max(SMALLEST_NORMAL);
    let bits = x.to_bits();
    let exponent = (bits >> 23) as i32 - 0x7f;
    // Mantissa rescaled into [0.5, 1).
    let mut m = f32::from_bits((bits & !EXPONENT_BITS) | 0.5f32.to_bits());
    let mut e = exponent as f32 + 1.0;

    let below = m < SQRT_HALF;
    let extra = if below { m } else { 0.0 };
    m -= 1.0;
    e -= if below { 1.0 } else { 0.0 };
    m += extra;

    let z = m * m;
    let mut y = LOG_POLY[0];
    for &coefficient in &LOG_POLY[1..] {
        y = y.mul_add(m, coefficient);
    }
    y *= m;
    y = y.mul_add(z, e * LOG_Q1);
    y = (-z).mul_add(0.5, y);
    let sum = m + y;
    e.mul_add(LOG_Q2, sum)
}

/// `(sin(x), cos(x))`, accurate for `|x| < 8192` (torch calls it on `[0, 2*pi)`).
pub(crate) fn sin_cos(x: f32) -> (f32, f32) {
    let mut sin_sign = x.to_bits() & SIGN_BIT;
    let abs = x.abs();

    // Octant index, rounded up to even (cephes' `j = (j + 1) & ~1`).
    let octant = (((abs * FOUR_OVER_PI) as i32) + 1) & !1;
    let octant_f = octant as f32;
    sin_sign ^= ((octant & 4) as u32) << 29;
    let cos_sign = ((!(octant - 2) & 4) as u32) << 29;
    let sine_poly_is_sin = octant & 2 == 0;

    // Extended-precision reduction: x - octant * pi/4 in three parts.
    let mut r = octant_f.mul_add(MINUS_DP1, abs);
    r = octant_f.mul_add(MINUS_DP2, r);
    r = octant_f.mul_add(MINUS_DP3, r);

    let z = r * r;
    let mut cos_poly = COS_POLY[0].mul_add(z, COS_POLY[1]);
    cos_poly = cos_poly.mul_add(z, COS_POLY[2]);
    cos_poly *= z;
    cos_poly = cos_poly.mul_add(z, -(z * 0.5));
    cos_poly += 1.0;

    let mut sin_poly = SIN_POLY[0].mul_add(z, SIN_POLY[1]);
    sin_poly = sin_poly.mul_add(z, SIN_POLY[2]);
    sin_poly *= z;
    sin_poly = sin_poly.mul_add(r, r);

    // The vector code selects with bit masks and adds the zeroed lane back; the +0.0 / -0.0 arithmetic
    // is kept so signed zeros come out the same.
    let (sin_from_sin, sin_from_cos) = if sine_poly_is_sin {
        (sin_poly, 0.0)
    } else {
        (0.0, cos_poly)
    };
    let sin = sin_from_cos + sin_from_sin;
    let cos = (cos_poly - sin_from_cos) + (sin_poly - sin_from_sin);
    (
        f32::from_bits(sin.to_bits() ^ sin_sign),
        f32::from_bits(cos.to_bits() ^ cos_sign),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_libm_on_the_unit_interval() {
        for i in 1..=1000 {
            let x = i as f32 / 1000.0;
            assert!(
                (log(x) - x.ln()).abs() <= 2.0 * f32::EPSILON * x.ln().abs().max(1e-6),
                "log({x})"
            );
            let theta = x * std::f32::consts::TAU;
            let (s, c) = sin_cos(theta);
            assert!((s - theta.sin()).abs() < 1e-6, "sin({theta})");
            assert!((c - theta.cos()).abs() < 1e-6, "cos({theta})");
        }
    }
}
