#!/usr/bin/python3
"""portable-poly.py - the polynomial coefficients of traind's portable
transcendental functions (engine/core/portable-math.h), fitted here so that
anyone can check or refit them. Prints the C table that portable-math.h
holds; doc/portable.md describes each approximation and its error.

Each polynomial is a weighted minimax fit (Lawson's iteratively reweighted
least squares on 4000 Chebyshev nodes) against mpmath at 40 digits; the
coefficients are then rounded to float. Run with Debian's python3 (numpy,
mpmath): /usr/bin/python3 tools/portable-poly.py
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 40


def lawson(xs, target, deg, weight, iters=300):
    """Coefficients c[0..deg] of sum c_i x^i minimizing max |w (target - fit)|."""
    A = np.array([[x ** i for i in range(deg + 1)] for x in xs])
    y = np.array([target(x) for x in xs])
    w = np.array([weight(x) for x in xs])
    lw = np.ones(len(xs)) / len(xs)
    for _ in range(iters):
        sw = np.sqrt(lw) * w
        c, *_ = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)
        e = np.abs((y - A @ c) * w)
        lw = lw * e
        lw /= lw.sum()
    return c, e.max()


def nodes(a, b, n=4000):
    k = np.arange(n)
    return (a + b) / 2 + (b - a) / 2 * np.cos(np.pi * (k + 0.5) / n)


def hexf(v):
    """v rounded to float, as a C hex literal without trailing zeros."""
    h = float(np.float32(v)).hex()
    mant, exp = h.split("p")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return mant + "p" + exp + "f"


def emit(name, c, err, what):
    print("/* %s: max weighted error %.3g in float64 before rounding to float */" % (what, err))
    print("static const float %s[%d] = {" % (name, len(c)))
    for v in c:
        print("\t%s," % hexf(v))
    print("};")


def main():
    # exp: e^r = 1 + r + r^2 Q(r) on |r| <= ln2/2 (a little wider: n is rounded
    # from x log2e), relative error.
    R = 0.3466 * 1.001
    c, e = lawson(nodes(-R, R), lambda r: float((mp.exp(mp.mpf(r)) - 1 - r) / mp.mpf(r) ** 2), 4,
                  lambda r: r * r / float(mp.exp(r)))
    emit("pk_exp_q", c, e, "exp: Q(r), e^r = 1 + r + r^2 Q(r), |r| <= ln2/2, relative")

    # log: log1p(f) = f - f^2/2 + s (f^2/2 + z L(z)), s = f / (2 + f), z = s^2,
    # |s| <= 0.1716 (f in [sqrt(1/2) - 1, sqrt(2) - 1]); the error of s z L(z).
    S = 0.1716 * 1.001

    def lt(z):
        s = mp.sqrt(mp.mpf(z))
        return float((2 * mp.atanh(s) - 2 * s) / (s * z))
    c, e = lawson(nodes(1e-12, S * S), lt, 3, lambda z: float(mp.sqrt(z) * z))
    emit("pk_log_l", c, e, "log: L(z), 2 atanh(s) = 2s + s z L(z), z = s^2 <= 0.1716^2, absolute in s z L")

    # tanh: tanh(x) = x + x z P(z), z = x^2, |x| < 1, relative.
    def pt(z):
        x = mp.sqrt(mp.mpf(z))
        return float((mp.tanh(x) - x) / (x * z))
    c, e = lawson(nodes(1e-10, 1.0), pt, 8, lambda z: float(mp.sqrt(z) * z / mp.tanh(mp.sqrt(z))))
    emit("pk_tanh_p", c, e, "tanh: P(z), tanh(x) = x + x z P(z), |x| < 1, relative")

    # erf: |x| < 1: erf(x) = x + x P(z), z = x^2, relative.
    def pe(z):
        x = mp.sqrt(mp.mpf(z))
        return float(mp.erf(x) / x - 1)
    c, e = lawson(nodes(1e-10, 1.0), pe, 6, lambda z: float(mp.sqrt(z) / mp.erf(mp.sqrt(z))))
    emit("pk_erf_p", c, e, "erf: P(z), erf(x) = x + x P(z), |x| < 1, relative")

    # erf: 1 <= |x| < 2 and 2 <= |x| < 4: erf(x) = 1 - E(t), t = (|x| - mid) *
    # 2 / (b - a) in [-1, 1] (exact in float for these intervals), E ~ erfc,
    # absolute. erf(x) rounds to 1 from 3.9192 on.
    for name, a, b, deg in (("pk_erfc_b", 1.0, 2.0, 10), ("pk_erfc_c", 2.0, 4.0, 11)):
        m, h = (a + b) / 2, 2 / (b - a)
        c, e = lawson(nodes(-1, 1), lambda t: float(mp.erfc(mp.mpf(t) / h + m)), deg, lambda t: 1.0)
        emit(name, c, e, "erfc on [%g, %g] in t = (x - %g) * %g, absolute" % (a, b, m, h))


if __name__ == "__main__":
    main()
