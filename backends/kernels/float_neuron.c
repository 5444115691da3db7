/* The float backend's neuron kernel (neurocompile.backends.float_kernel): one neuron population over a
 * whole run, its input given for all steps, in float32 (neuron_run_f32) or float64 (neuron_run_f64).
 *
 * Each line is the operation of neurocompile.discretization in the same order, every product and sum
 * rounded on its own (compiled with -ffp-contract=off, no fast-math), so the results are those of its
 * torch step functions bit for bit; the per-neuron coefficients come from discretization too:
 *   LEAKY      v <- v + k*((v_leak - v) + r*x)                      (leaky_update, k = euler_rate)
 *   INTEGRATE  v <- v + r*x                                         (integrate_update, r = integrate_gain)
 *   CUBA       i' <- i + k_syn*(w_in*x - i)  (input scaled)  or  (i - k_syn*i) + w_in*x
 *              v <- LEAKY with x = i' (current first) or i      (cuba_current_update)
 *   spiking    s = (v - th > 0) (>= 0 inclusive); v <- v - s*th (subtract) or v*(1 - s) + s*v_reset
 *
 * x, out, v_rec, i_rec: sample-major [B, T, n]; out holds the spikes (spiking) or v; v_rec, i_rec may be
 * NULL. v_state, i_state [B, n] start at zero. Samples [b0, b1) (threads take disjoint slices). */
#include <stdint.h>
#include <string.h>

enum { LEAKY = 0, INTEGRATE = 1, CUBA = 2 };
enum { SPIKING = 1, SUBTRACT = 2, INCLUSIVE = 4, CURRENT_FIRST = 8, INPUT_SCALED = 16 };

#define CHUNK 256 /* neurons per pass of the three loops below (their input current stays on the stack) */

#define NEURON_KERNEL(NAME, R)                                                                        \
/* CUBA: the new current i' into i, and the membrane's drive (i' or the old i) into drive */          \
static void NAME##_current(int64_t m, int flags, R *restrict i, const R *restrict x,                 \
                           const R *restrict w_in, const R *restrict k_syn, R *restrict drive) {      \
    const int first = (flags & CURRENT_FIRST) != 0;                                                  \
    if (flags & INPUT_SCALED)                                                                        \
        for (int64_t j = 0; j < m; j++) {                                                            \
            const R i_new = i[j] + k_syn[j] * (w_in[j] * x[j] - i[j]);                               \
            drive[j] = first ? i_new : i[j];                                                         \
            i[j] = i_new;                                                                            \
        }                                                                                            \
    else                                                                                             \
        for (int64_t j = 0; j < m; j++) {                                                            \
            const R i_new = (i[j] - k_syn[j] * i[j]) + w_in[j] * x[j];                               \
            drive[j] = first ? i_new : i[j];                                                         \
            i[j] = i_new;                                                                            \
        }                                                                                            \
}                                                                                                    \
                                                                                                     \
static void NAME##_membrane(int64_t m, int64_t kind, R *restrict v, const R *restrict drive,          \
                            const R *restrict k, const R *restrict r, const R *restrict v_leak) {    \
    if (kind == INTEGRATE)                                                                           \
        for (int64_t j = 0; j < m; j++) v[j] = v[j] + r[j] * drive[j];                               \
    else                                                                                             \
        for (int64_t j = 0; j < m; j++) v[j] = v[j] + k[j] * ((v_leak[j] - v[j]) + r[j] * drive[j]); \
}                                                                                                    \
                                                                                                     \
/* spikes into out, then the reset of v */                                                           \
static void NAME##_fire(int64_t m, int flags, R *restrict v, const R *restrict th,                   \
                        const R *restrict v_reset, R *restrict out) {                                \
    if (flags & INCLUSIVE)                                                                           \
        for (int64_t j = 0; j < m; j++) out[j] = (R)(v[j] - th[j] >= 0);                             \
    else                                                                                             \
        for (int64_t j = 0; j < m; j++) out[j] = (R)(v[j] - th[j] > 0);                              \
    if (flags & SUBTRACT)                                                                            \
        for (int64_t j = 0; j < m; j++) v[j] = v[j] - out[j] * th[j];                                \
    else                                                                                             \
        for (int64_t j = 0; j < m; j++) v[j] = v[j] * ((R)1 - out[j]) + out[j] * v_reset[j];         \
}                                                                                                    \
                                                                                                     \
void NAME(int64_t T, int64_t B, int64_t n, int64_t kind, int64_t flags, const R *restrict x,         \
          const R *restrict k, const R *restrict r, const R *restrict v_leak, const R *restrict k_syn, \
          const R *restrict w_in, const R *restrict th, const R *restrict v_reset, R *restrict out,  \
          R *restrict v_rec, R *restrict i_rec, R *restrict v_state, R *restrict i_state,            \
          int64_t b0, int64_t b1) {                                                                  \
    R current[CHUNK];                                                                                \
    for (int64_t b = b0; b < b1; b++) {                                                              \
        R *restrict vb = v_state + b * n, *restrict ib = i_state + b * n;                            \
        memset(vb, 0, n * sizeof(R));                                                                \
        memset(ib, 0, n * sizeof(R));                                                                \
        for (int64_t t = 0; t < T; t++) {                                                            \
            const int64_t off = (b * T + t) * n;                                                     \
            for (int64_t j = 0; j < n; j += CHUNK) {                                                 \
                const int64_t m = n - j < CHUNK ? n - j : CHUNK;                                     \
                const R *drive = x + off + j;                                                        \
                if (kind == CUBA) {                                                                  \
                    NAME##_current(m, flags, ib + j, drive, w_in + j, k_syn + j, current);           \
                    drive = current;                                                                 \
                }                                                                                    \
                NAME##_membrane(m, kind, vb + j, drive, k + j, r + j, v_leak + j);                   \
                if (flags & SPIKING)                                                                 \
                    NAME##_fire(m, flags, vb + j, th + j, v_reset + j, out + off + j);               \
                else                                                                                 \
                    memcpy(out + off + j, vb + j, m * sizeof(R));                                    \
            }                                                                                        \
            if (v_rec) memcpy(v_rec + off, vb, n * sizeof(R));                                       \
            if (i_rec) memcpy(i_rec + off, ib, n * sizeof(R));                                       \
        }                                                                                            \
    }                                                                                                \
}

NEURON_KERNEL(neuron_run_f32, float)
NEURON_KERNEL(neuron_run_f64, double)
