/* Kernels of the CPU backend (neurocompile.backends.cpu), exactly neurocompile.fixedpoint including every
 * int32 wrap. Compiled on first use with the system C compiler and loaded with ctypes (which releases the
 * GIL, so batch slices [b0, b1) run on threads).
 *
 * lif_run_*: the LIF recurrence of one population over T steps, its synaptic input given for all steps.
 *   a_in[b, t', j] is the raw input read at step t = t' + shift (shift 1: the sum of spikes sent at t - 1),
 *   scaled by wexp (<< or arithmetic >>) and wrapped to int32 as on Lava's channels.
 * gather_sum: event-driven synaptic sums, out[r] = sum of the weight rows of the active inputs of row r.
 * net_run: a whole program step by step (programs with cycles): every population integrates what was sent
 *   at t - 1, spikes; every synapse gathers the rows of its active sources and sends them, arriving at
 *   t + 1 + delay.
 *
 * State in int32 with uint32 wrap-around arithmetic (Lava's int32 arrays). fu, fv: decay multipliers
 * (fixedpoint.decay_multiplier); th: fixedpoint.effective_vth clipped to 2**23 - 1; bias:
 * fixedpoint.effective_bias, added from step bias_onset on (fixedpoint.bias_active); reset_interval as in
 * fixedpoint.reset_due; reset: the reset flags below (Population.reset and reset_timing). Spikes are uint8 0/1. Weights
 * are int16 mantissas: a synapse's sum is (sum of mantissas) << wexp, wexp including the mantissa's shift;
 * sums accumulate in uint32 (exact for wexp >= 0, modulo 2**32, and for |sums| < 2**31: the caller checks). */
#include <stdint.h>
#include <string.h>

#include "lif_step.h"

/* Reset flags (cpu._reset_flags, fixedpoint.timed_fire): SUB reset by subtraction (else to zero); SNN
 * snnTorch's timings (r = stored v > th: subtraction takes th * r off the bias of the step, zero resets the
 * stored membrane, or with SYN the stepped one); IMM the immediate timing (v - th*(s - r) or v - (s - r)*v,
 * clipped), else delayed (v kept). */
enum { SUB = 1, SNN = 2, IMM = 4, SYN = 8 };

/* One step of n neurons (u, v updated in place; spikes to so). Inlined once per reset mode, with mode a
 * constant, so each copy has the loop of a single mode. */
static inline __attribute__((always_inline)) void neuron_step_mode(
    int64_t n, int32_t *restrict ub, int32_t *restrict vb, const uint32_t *restrict a64,
    const int32_t *restrict bias, int32_t bm, uint32_t su, uint32_t sv, int32_t th, int32_t sp,
    uint8_t *restrict so, const int mode) {
    const int32_t L = (1 << 23) - 1;
    for (int64_t j = 0; j < n; j++) {
        int32_t vin = vb[j], b = bias[j] & bm;
        const int32_t r = (mode & SNN) ? vin > th : 0;
        if ((mode & SNN) && (mode & SUB)) b = (int32_t)((uint32_t)b - (uint32_t)(r ? th : 0));
        if ((mode & SNN) && !(mode & (SUB | SYN)) && r) vin = 0;
        int32_t vp = lif_subthreshold(&ub[j], vin, a64[j], b, su, sv);
        if ((mode & SNN) && !(mode & SUB) && (mode & SYN) && r) vp = 0;
        const int32_t s = (vp > th) & sp;
        if (!(mode & SNN)) {
            vb[j] = s ? ((mode & SUB) ? vp - th : 0) : vp;
        } else if (mode & IMM) {
            const int64_t d = (int64_t)s - r, nv = (mode & SUB) ? vp - (int64_t)th * d : vp - d * vp;
            vb[j] = (int32_t)(nv > L ? L : nv < -L ? -L : nv);
        } else {
            vb[j] = vp;
        }
        so[j] = (uint8_t)s;
    }
}

static void neuron_step(int64_t n, int32_t *ub, int32_t *vb, const uint32_t *a64, const int32_t *bias, int32_t bm,
                        uint32_t su, uint32_t sv, int32_t th, int32_t sp, uint8_t *so, int64_t mode) {
#define MODE(M) case M: neuron_step_mode(n, ub, vb, a64, bias, bm, su, sv, th, sp, so, M); break;
    switch (mode) {
        MODE(0) MODE(SUB) MODE(SNN | SUB) MODE(SNN | SUB | IMM) MODE(SNN) MODE(SNN | SYN) MODE(SNN | IMM)
        MODE(SNN | IMM | SYN)
    }
#undef MODE
}

static inline int32_t threshold(int64_t vth) {
    const int32_t L = (1 << 23) - 1;
    return (int32_t)(vth > L ? L : vth);
}

static inline int reset_due(int64_t t, int64_t reset_interval) {
    return reset_interval > 0 && (t + 1) % reset_interval == 0;
}


#define LIF_RUN(NAME, A_T)                                                                         \
void NAME(int64_t T, int64_t n, const A_T *restrict a_in, int64_t shift, int64_t wexp,             \
          int64_t fu, int64_t fv, int64_t vth, const int32_t *restrict bias, int64_t spiking,      \
          int64_t reset_interval, int64_t reset, int64_t bias_onset, uint8_t *restrict s_out,      \
          int32_t *restrict u_out,                                                                 \
          int32_t *restrict v_out, int32_t *restrict u, int32_t *restrict v,                       \
          uint32_t *restrict scratch, int64_t b0, int64_t b1) {                                    \
    const int32_t th = threshold(vth), sp = spiking != 0;                                          \
    for (int64_t b = b0; b < b1; b++) {                                                            \
        int32_t *restrict ub = u + b * n, *restrict vb = v + b * n;                                \
        uint32_t *restrict a64 = scratch + b * n;                                                  \
        memset(ub, 0, n * sizeof(int32_t)); memset(vb, 0, n * sizeof(int32_t));                    \
        for (int64_t t = 0; t < T; t++) {                                                          \
            const int64_t off = (b * T + t) * n;                                                   \
            if (reset_due(t, reset_interval)) {                                                    \
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
            neuron_step(n, ub, vb, a64, bias, bias_mask(t, bias_onset), (uint32_t)fu, (uint32_t)fv, \
                        th, sp, s_out + off, reset);                                               \
            if (u_out) memcpy(u_out + off, ub, n * sizeof(int32_t));                               \
            if (v_out) memcpy(v_out + off, vb, n * sizeof(int32_t));                               \
        }                                                                                          \
    }                                                                                              \
}

LIF_RUN(lif_run_f32, float)
LIF_RUN(lif_run_i32, int32_t)
LIF_RUN(lif_run_i64, int64_t)

/* acc[0:N] = sum of the rows w[i] (int16 [K, N]) of the inputs i with s[i] != 0, four rows per pass over acc */
static inline void gather_row(int64_t K, int64_t N, const uint8_t *restrict s, const int16_t *restrict w,
                              uint32_t *restrict acc) {
    memset(acc, 0, N * sizeof(uint32_t));
    const int16_t *rows[4];
    int64_t k = 0;
    for (int64_t i = 0; i <= K; i++) {
        if (i < K && !s[i]) continue;
        if (i < K) rows[k++] = w + i * N;
        if (k == 4) {
            const int16_t *restrict a = rows[0], *restrict b = rows[1], *restrict c = rows[2], *restrict d = rows[3];
            for (int64_t j = 0; j < N; j++) acc[j] += (uint32_t)((int32_t)a[j] + b[j] + c[j] + d[j]);
            k = 0;
        } else if (i == K) {
            for (int64_t m = 0; m < k; m++)
                for (int64_t j = 0; j < N; j++) acc[j] += (uint32_t)(int32_t)rows[m][j];
        }
    }
}

/* out[r] (int32 [M, N]) for rows r in [r0, r1) of the spikes s (uint8 [M, K]), w int16 [K, N] */
void gather_sum(int64_t K, int64_t N, const uint8_t *restrict s, const int16_t *restrict w, int32_t *restrict out,
                int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) gather_row(K, N, s + r * K, w, (uint32_t *)out + r * N);
}

typedef struct {
    int64_t n, fu, fv, vth;
    const int32_t *bias;
    int64_t spiking, reset_interval, reset, bias_onset;
    uint8_t *s_out;          /* [B, T, n] */
    int32_t *u_out, *v_out;  /* [B, T, n] or NULL */
} NetPop;

typedef struct {
    int64_t src;             /* node: input ports first, then populations */
    int64_t tgt;             /* population */
    int64_t n_src, n_tgt, n_delays, wexp;
    const int16_t *w;        /* [n_src, n_delays * n_tgt]: delay-major rows */
    const int64_t *delays;   /* [n_delays] */
} NetSyn;

typedef struct {
    int64_t T, horizon;      /* horizon: 2 + the largest delay (slots of the arrival ring) */
    int64_t n_ports;
    const uint8_t *const *ports; /* [B, T, n] */
    int64_t n_pops;
    const NetPop *pops;
    int64_t n_syns;
    const NetSyn *syns;
} Net;

/* int32 words of scratch per batch row: u, v and an arrival ring [horizon, n] per population, and one
 * activation [n_delays * n_tgt] per synapse */
int64_t net_scratch(const Net *net) {
    int64_t words = 0;
    for (int64_t p = 0; p < net->n_pops; p++) words += (2 + net->horizon) * net->pops[p].n;
    for (int64_t k = 0; k < net->n_syns; k++) words += net->syns[k].n_delays * net->syns[k].n_tgt;
    return words;
}

static void net_row(const Net *net, int64_t b, uint32_t *mem, int64_t words) {
    const int64_t T = net->T, H = net->horizon;
    memset(mem, 0, words * sizeof(uint32_t));
    uint32_t *u[net->n_pops], *v[net->n_pops], *ring[net->n_pops], *act[net->n_syns];
    for (int64_t p = 0; p < net->n_pops; p++) {
        const int64_t n = net->pops[p].n;
        u[p] = mem, v[p] = mem + n, ring[p] = mem + 2 * n;
        mem += (2 + H) * n;
    }
    for (int64_t k = 0; k < net->n_syns; k++) act[k] = mem, mem += net->syns[k].n_delays * net->syns[k].n_tgt;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t p = 0; p < net->n_pops; p++) {
            const NetPop *pp = net->pops + p;
            const int64_t n = pp->n, off = (b * T + t) * n;
            if (reset_due(t, pp->reset_interval)) memset(u[p], 0, 2 * n * sizeof(uint32_t));
            uint32_t *a = ring[p] + (t % H) * n;
            for (int64_t j = 0; j < n; j++) a[j] <<= 6;
            neuron_step(n, (int32_t *)u[p], (int32_t *)v[p], a, pp->bias, bias_mask(t, pp->bias_onset),
                        (uint32_t)pp->fu, (uint32_t)pp->fv, threshold(pp->vth), pp->spiking != 0, pp->s_out + off,
                        pp->reset);
            memset(a, 0, n * sizeof(uint32_t));
            if (pp->u_out) memcpy(pp->u_out + off, u[p], n * sizeof(int32_t));
            if (pp->v_out) memcpy(pp->v_out + off, v[p], n * sizeof(int32_t));
        }
        for (int64_t k = 0; k < net->n_syns; k++) {
            const NetSyn *sy = net->syns + k;
            const int64_t n = sy->n_tgt, q = sy->src - net->n_ports;
            const uint8_t *s = q < 0 ? net->ports[sy->src] + (b * T + t) * sy->n_src
                                     : net->pops[q].s_out + (b * T + t) * sy->n_src;
            gather_row(sy->n_src, sy->n_delays * n, s, sy->w, act[k]);
            for (int64_t d = 0; d < sy->n_delays; d++) {
                uint32_t *dst = ring[sy->tgt] + ((t + 1 + sy->delays[d]) % H) * n, *src = act[k] + d * n;
                if (sy->wexp >= 0)
                    for (int64_t j = 0; j < n; j++) dst[j] += src[j] << sy->wexp;
                else
                    for (int64_t j = 0; j < n; j++) dst[j] += (uint32_t)((int32_t)src[j] >> -sy->wexp);
            }
        }
    }
}

/* rows [b0, b1) of the batch; scratch: net_scratch(net) words per row */
void net_run(const Net *net, uint32_t *scratch, int64_t b0, int64_t b1) {
    const int64_t words = net_scratch(net);
    for (int64_t b = b0; b < b1; b++) net_row(net, b, scratch + b * words, words);
}
