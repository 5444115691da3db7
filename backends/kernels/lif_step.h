/* The integer LIF of one neuron, shared by the C kernels (lif.c, plastic.c): exactly
 * neurocompile.fixedpoint.lif_fixed_subthreshold, every int32 wrap included. Included textually by
 * backends.native.build_library. */
#include <stdint.h>

/* trunc(x * f / 4096) for int32 x, 0 <= f <= 4096, in int32 lanes: x = h * 4096 + l with
 * 0 <= l < 4096 gives floor = h * f + (l * f >> 12) (mod 2**32 arithmetic: the result fits in
 * int32), then +1 for negative x with a nonzero remainder (round toward zero). */
static inline int32_t decay32(int32_t x, uint32_t f) {
    uint32_t h = (uint32_t)(x >> 12), l = (uint32_t)x & 4095u, lf = l * f;
    uint32_t fl = h * f + (lf >> 12);
    return (int32_t)(fl + (uint32_t)((x < 0) & ((lf & 4095u) != 0)));
}

/* u <- wrap_u(decay(u) + a64), returned through *u; the new v before reset (clipped) is returned.
 * a64: the synaptic input already shifted left by 6 and wrapped to 32 bits. */
static inline int32_t lif_subthreshold(int32_t *u, int32_t v, uint32_t a64, int32_t bias, uint32_t fu, uint32_t fv) {
    const int32_t M = 1 << 23, L = (1 << 23) - 1;
    int32_t up = (int32_t)((uint32_t)decay32(*u, fu) + a64);
    up = up > M ? up - 2 * M : up;
    up = up <= -M ? (int32_t)((uint32_t)up + (uint32_t)(2 * M)) : up;
    *u = up;
    int32_t vp = (int32_t)((uint32_t)decay32(v, fv) + (uint32_t)up + (uint32_t)bias);
    vp = vp > L ? L : vp;
    return vp < -L ? -L : vp;
}

/* fixedpoint.bias_active as a mask on the bias: all ones from step bias_onset on, else 0 */
static inline int32_t bias_mask(int64_t t, int64_t bias_onset) {
    return t >= bias_onset ? -1 : 0;
}
