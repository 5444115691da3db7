/* Lava fixed_pt LIF over T steps (neurocompile.backends.cpu), exactly neurocompile.fixedpoint.lif_fixed_step
 * including every int32 wrap. Compiled on first use with the system C compiler and loaded with ctypes
 * (which releases the GIL, so batch slices run on threads).
 *
 * Batch rows [b0, b1). State in int32 with uint32 wrap-around arithmetic (Lava's int32 arrays).
 * a_in[b, t', j] is the raw input read at step t = t' + shift (shift 1: the sum of spikes sent at
 * t - 1), scaled by weight_exp (<< or arithmetic >>) and wrapped to int32 as on Lava's channels.
 * fu, fv: decay multipliers (fixedpoint.decay_multiplier); vth: fixedpoint.effective_vth;
 * bias: fixedpoint.effective_bias; reset_interval as in fixedpoint.reset_due; subtract: 1 for
 * Population.reset == "subtract" (a spiking v becomes v - vth, not 0; it stays in [0, 2**23 - 1)). */
#include <stdint.h>
#include <string.h>

#include "lif_step.h"

/* One step of n neurons (u, v updated in place; spikes to so). Inlined twice, with sub a constant
 * (0: v <- 0 after a spike, 1: v <- v - th), so each copy has the loop of a single reset mode. */
static inline __attribute__((always_inline)) void neuron_step(
    int64_t n, int32_t *restrict ub, int32_t *restrict vb, const uint32_t *restrict a64,
    const int32_t *restrict bias, uint32_t su, uint32_t sv, int32_t th, int32_t sp, float *restrict so,
    const int sub) {
    for (int64_t j = 0; j < n; j++) {
        const int32_t vp = lif_subthreshold(&ub[j], vb[j], a64[j], bias[j], su, sv);
        const int32_t s = (vp > th) & sp;
        vb[j] = s ? (sub ? vp - th : 0) : vp;
        so[j] = (float)s;
    }
}

#define LIF_RUN(NAME, A_T)                                                                         \
void NAME(int64_t T, int64_t n, const A_T *restrict a_in, int64_t shift, int64_t wexp,             \
          int64_t fu, int64_t fv, int64_t vth, const int32_t *restrict bias, int64_t spiking,      \
          int64_t reset_interval, int64_t subtract, float *restrict s_out,                         \
          int32_t *restrict u_out,                                                                 \
          int32_t *restrict v_out, int32_t *restrict u, int32_t *restrict v,                       \
          uint32_t *restrict scratch, int64_t b0, int64_t b1) {                                    \
    const int32_t L = (1 << 23) - 1, th = (int32_t)(vth > L ? L : vth);                            \
    const int32_t sp = spiking != 0, sub = subtract != 0;                                          \
    const uint32_t su = (uint32_t)fu, sv = (uint32_t)fv;                                           \
    for (int64_t b = b0; b < b1; b++) {                                                            \
        int32_t *restrict ub = u + b * n, *restrict vb = v + b * n;                                \
        uint32_t *restrict a64 = scratch + b * n;                                                  \
        memset(ub, 0, n * sizeof(int32_t)); memset(vb, 0, n * sizeof(int32_t));                    \
        for (int64_t t = 0; t < T; t++) {                                                          \
            const int64_t off = (b * T + t) * n;                                                   \
            if (reset_interval > 0 && (t + 1) % reset_interval == 0) {                             \
                memset(ub, 0, n * sizeof(int32_t)); memset(vb, 0, n * sizeof(int32_t));            \
            }                                                                                      \
            if (t < shift) {                                                                       \
                memset(a64, 0, n * sizeof(uint32_t));                                              \
            } else {                                                                               \
                const A_T *restrict a = a_in + (b * T + t - shift) * n;                            \
                if (wexp >= 0)                                                                     \
                    for (int64_t j = 0; j < n; j++)                                                \
                        a64[j] = (uint32_t)(int64_t)a[j] << (wexp + 6);                            \
                else                                                                               \
                    for (int64_t j = 0; j < n; j++)                                                \
                        a64[j] = (uint32_t)((int64_t)a[j] >> (-wexp)) << 6;                        \
            }                                                                                      \
            float *restrict so = s_out + off;                                                      \
            if (sub) neuron_step(n, ub, vb, a64, bias, su, sv, th, sp, so, 1);                     \
            else neuron_step(n, ub, vb, a64, bias, su, sv, th, sp, so, 0);                         \
            if (u_out) memcpy(u_out + off, ub, n * sizeof(int32_t));                               \
            if (v_out) memcpy(v_out + off, vb, n * sizeof(int32_t));                               \
        }                                                                                          \
    }                                                                                              \
}

LIF_RUN(lif_run_f32, float)
LIF_RUN(lif_run_i64, int64_t)
