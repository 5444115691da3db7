/* Plastic programs (on-chip learning) over T steps, learner after learner (neurocompile.backends.cpu_learning).
 *
 * Exactly the per-step loop of neurocompile.fixedpoint's reference functions: lif_fixed_subthreshold and the
 * spike/reset of lif_fixed_step, learning_signal, dense_activation/scale_activation, receive_traces, learn
 * (trace_history, product_value, apply_weight_update), every int32 wrap included. Compiled on first use with
 * -ffp-contract=off (the stochastic trace decay must round f * h to double before floor, as numpy does) and
 * loaded with ctypes, which releases the GIL: learner slices [b0, b1) run on threads.
 *
 * Step t (0-based; Lava's time step k = t + 1) of learner b:
 *   1. spike ports load s[t]; every population integrates the input sent at t - 1 (a, in uint32: the int32
 *      channel sum), spikes, resets, and (learning) computes y, error and the surrogate trace; its
 *      third-factor input is its target port at t or the feedback sum sent at t - 1;
 *   2. every synapse sends W . s[t] (feedback: B . error[t], int64) scaled by weight_exp, arriving at t + 1;
 *   3. every plastic synapse receives its traces (pre spikes, bAP, y) and learns when k % t_epoch == 0.
 * The weights of plastic synapses live in Syn.w (one matrix per learner, updated in place: the final weights).
 * Random draws come from Python (fixedpoint.learning_randoms): row draw_row[b] of x_decay etc., one column per
 * learning epoch; the weight rounding compares the 7-bit remainder with w_round = floor(128 * r), which is
 * r < remainder / 128. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lif_step.h"

typedef struct {
    int64_t n;
    int64_t fu, fv, vth, spiking, reset_interval; /* decay multipliers; vth: (vth << 6) clipped to 2**23 - 1 */
    const int32_t *bias;
    int64_t bias_onset; /* the bias is added from this step on */
    /* learning signal (learning != 0) */
    int64_t learning;
    const int32_t *target; /* [B, T, n] target port, or NULL: the feedback sum */
    int64_t output_v, output_shift, vth_eff;
    const int64_t *table;
    int64_t surrogate, table_len, sur_shift, trace_mult;
    int64_t term[3]; /* -1: none, 0: one, 1: surrogate, 2: surrogate trace of t - 1 */
    int64_t term_shift[3];
    /* recording, [B, T, n] (NULL: not recorded) */
    uint8_t *s_out;
    int32_t *u_out, *v_out;
} Pop;

typedef struct {
    int64_t dep;   /* 0: x0, 1: y0, 2: uK */
    int64_t shift; /* right shift max(0, widths + 4 - 15) */
    int64_t n_factors;
    int64_t var[4]; /* 0 x0, 1 x1, 2 x2, 3 y0, 4 y1, 5 y2, 6 y3, 7 w */
    int64_t cst[4], lo[4], hi[4];
} Prod;

typedef struct {
    int64_t src, tgt; /* src: node (spike ports first, then populations); tgt: population */
    int64_t n_src, n_tgt, wexp;
    int64_t kind; /* 0: static, 1: plastic, 2: feedback (error) */
    int32_t *w;   /* plastic: [B, n_tgt, n_src]; static, feedback: [*, n_src, n_tgt]; learner b at b * w_stride */
    int64_t w_stride;
    /* plastic */
    const int32_t *keep; /* [*, n_tgt, n_src]: -1 where a weight learns, 0 where a sparse synapse has no entry */
    int64_t keep_stride;
    int64_t t_epoch, decimate; /* decimate: 2**K of the uK dependencies, 0: none */
    int64_t imp_whole[2], imp_frac[2], tau_nonzero[2];
    double x_factor[2], y_factor;
    int64_t acc_min, acc_max, w_lo, w_hi; /* sign-mode saturation of the accumulator, weight range */
    int64_t bap;
    int64_t n_prod;
    const Prod *prod;
    const int32_t *mant, *expo; /* [B, n_prod]: lava_scale'd mantissa, exponent + 7 */
    const double *x_decay, *y_decay; /* [rows, draw_cols]: column e for learning epoch e (step e * t_epoch) */
    const int64_t *x_imp;
    const int32_t *w_round;
    int64_t draw_cols;
    const int64_t *draw_row; /* [B] */
    int32_t *x_out[2], *y_out[3]; /* [B, T, n] or NULL */
    int32_t *ckpt;                /* [B, n_ckpt, n_tgt, n_src] or NULL */
    int64_t ckpt_every, n_ckpt;
} Syn;

typedef struct {
    int64_t T;
    int64_t n_ports;
    const uint8_t *const *port_data; /* [B, T, n] */
    const int64_t *port_n;
    int64_t n_pops;
    const Pop *pops;
    int64_t n_syns;
    const Syn *syns;
    int64_t trace_max, acc_lo, acc_hi, wacc_shift, sig_lo, sig_hi, psi_max, decay_shift;
} Net;

typedef struct {
    int32_t *u, *v, *vpre, *s, *err, *psi, *old, *psi_now, *y; /* y: [3, n]; psi: the surrogate trace */
    uint32_t *a, *third;                       /* input and third-factor input arriving next step */
} PopState;

typedef struct {
    int active, nw, nx, ny;
    int32_t sh, e7;
    uint32_t *P, *Q;
    int32_t wc[4], wlo[4], whi[4];
    int32_t *X[4], *Y[4];
} ProdRun;

typedef struct {
    int32_t *sum; /* W . s of this step */
    int64_t *sum64;
    int32_t *x, *tx, *y, *ty, *xh, *yh, *xrow, *ycol, *acc, *val, *gather;
    uint32_t *P, *Q;
    ProdRun *run;
    int64_t epochs;
    int y_used[3]; /* y1-y3 appear as factors */
} SynState;

typedef struct {
    char *base;
    size_t used;
} Arena;

static void *take(Arena *A, size_t bytes) {
    size_t off = (A->used + 63) & ~(size_t)63;
    A->used = off + bytes;
    return A->base ? A->base + off : NULL;
}


static inline int64_t clip64(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : x > hi ? hi : x; }
static inline int32_t clip32(int32_t x, int32_t lo, int32_t hi) { return x < lo ? lo : x > hi ? hi : x; }

/* fixedpoint.scale_activation before the int32 wrap */
static inline int64_t scale(int64_t acc, int64_t wexp) {
    return wexp > 0 ? (int64_t)((uint64_t)acc << wexp) : acc >> (-wexp);
}

static int n_slots(const Syn *sy, int64_t want_xrow) {
    int count = 0;
    for (int64_t p = 0; p < sy->n_prod; p++)
        for (int64_t f = 0; f < sy->prod[p].n_factors; f++) {
            int64_t v = sy->prod[p].var[f], d = sy->prod[p].dep;
            count += want_xrow ? (v == 1 || v == 2) && d == 1 : (v >= 4 && v <= 6) && d == 0;
        }
    return count;
}

static void layout(const Net *net, Arena *A, PopState *ps, SynState *ss, int32_t **port_s) {
    for (int64_t q = 0; q < net->n_ports; q++) port_s[q] = take(A, net->port_n[q] * 4);
    for (int64_t p = 0; p < net->n_pops; p++) {
        int64_t n = net->pops[p].n;
        PopState *s = ps + p;
        s->u = take(A, n * 4), s->v = take(A, n * 4), s->vpre = take(A, n * 4), s->s = take(A, n * 4);
        s->err = take(A, n * 4), s->psi = take(A, n * 4), s->y = take(A, 3 * n * 4);
        s->old = take(A, n * 4), s->psi_now = take(A, n * 4);
        s->a = take(A, n * 4), s->third = take(A, n * 4);
    }
    for (int64_t k = 0; k < net->n_syns; k++) {
        const Syn *sy = net->syns + k;
        SynState *s = ss + k;
        s->sum = take(A, sy->n_tgt * 4), s->sum64 = take(A, sy->n_tgt * 8);
        if (sy->kind != 1) continue;
        int64_t np = sy->n_src, nq = sy->n_tgt, te1 = sy->t_epoch + 1;
        s->x = take(A, 2 * np * 4), s->tx = take(A, np * 4), s->y = take(A, 3 * nq * 4), s->ty = take(A, nq * 4);
        s->xh = take(A, te1 * 2 * np * 4), s->yh = take(A, te1 * 3 * nq * 4);
        s->xrow = take(A, (size_t)n_slots(sy, 1) * te1 * np * 4);
        s->ycol = take(A, (size_t)n_slots(sy, 0) * te1 * nq * 4);
        s->acc = take(A, np * 4), s->val = take(A, np * 4), s->gather = take(A, np * 4);
        s->P = take(A, sy->n_prod * np * 4), s->Q = take(A, sy->n_prod * nq * 4);
        s->run = take(A, sy->n_prod * sizeof(ProdRun));
        for (int64_t p = 0; p < sy->n_prod; p++)
            for (int64_t f = 0; f < sy->prod[p].n_factors; f++)
                if (sy->prod[p].var[f] >= 4 && sy->prod[p].var[f] <= 6) s->y_used[sy->prod[p].var[f] - 4] = 1;
    }
}

static void lif(int64_t n, int32_t *restrict u, int32_t *restrict v, int32_t *restrict vpre, int32_t *restrict s,
                const uint32_t *restrict a, const int32_t *restrict bias, int32_t bm, uint32_t fu, uint32_t fv,
                int32_t th, int32_t sp) {
    for (int64_t j = 0; j < n; j++) {
        const int32_t vp = lif_subthreshold(&u[j], v[j], a[j] << 6, bias[j] & bm, fu, fv);
        const int32_t sj = (vp > th) & sp;
        vpre[j] = vp;
        v[j] = sj ? 0 : vp;
        s[j] = sj;
    }
}

/* fixedpoint.round_shift: x / 2**sh rounded to nearest, ties away from zero */
static inline int64_t round_shift(int64_t x, int64_t sh) {
    if (sh == 0) return x;
    const int64_t half = (int64_t)1 << (sh - 1);
    return x < 0 ? -((-x + half) >> sh) : (x + half) >> sh;
}

/* fixedpoint.learning_signal: error, surrogate (psi) and its trace, y1-y3 */
static void signal(const Net *net, const Pop *pp, const int32_t *restrict vpre, const int32_t *restrict s,
                   const int32_t *restrict tg, const uint32_t *restrict third, int32_t *restrict err,
                   int32_t *restrict trace, int32_t *restrict old, int32_t *restrict psi, int32_t *restrict y) {
    const int64_t n = pp->n;
    const int32_t osh = (int32_t)pp->output_shift;
    if (!tg)
        for (int64_t j = 0; j < n; j++) err[j] = (int32_t)third[j];
    else if (pp->output_v) /* wrap32(output - target): the same bits in uint32 */
        for (int64_t j = 0; j < n; j++) err[j] = (int32_t)((uint32_t)(vpre[j] >> osh) - (uint32_t)tg[j]);
    else
        for (int64_t j = 0; j < n; j++) err[j] = (int32_t)((uint32_t)(s[j] << osh) - (uint32_t)tg[j]);
    if (pp->surrogate) {
        const int32_t vth = (int32_t)pp->vth_eff, sh = (int32_t)pp->sur_shift, last = (int32_t)pp->table_len - 1;
        const int64_t mult = pp->trace_mult, ds = net->decay_shift, top = net->psi_max;
        const int64_t *restrict table = pp->table;
        for (int64_t j = 0; j < n; j++) {
            int32_t d = vpre[j] - vth; /* |v| < 2**23, vth < 2**23 */
            d = (d < 0 ? -d : d) >> sh;
            psi[j] = (int32_t)table[d < last ? d : last];
        }
        for (int64_t j = 0; j < n; j++) {
            int64_t tr = (((int64_t)trace[j] * mult) >> ds) + psi[j];
            old[j] = trace[j];
            trace[j] = (int32_t)(tr < top ? tr : top);
        }
    }
    const int64_t lo = net->sig_lo, hi = net->sig_hi;
    for (int k = 0; k < 3; k++) {
        int32_t *restrict yk = y + k * n;
        const int64_t sh = pp->term_shift[k];
        const int32_t *restrict g = pp->term[k] == 1 ? psi : old;
        if (pp->term[k] == 0)
            for (int64_t j = 0; j < n; j++) yk[j] = (int32_t)clip64(round_shift((int64_t)err[j], sh), lo, hi);
        else if (pp->term[k] > 0)
            for (int64_t j = 0; j < n; j++)
                yk[j] = (int32_t)clip64(round_shift((int64_t)err[j] * g[j], sh), lo, hi);
    }
}

static void pop_step(const Net *net, const Pop *pp, PopState *st, int64_t b, int64_t t) {
    const int64_t n = pp->n, off = (b * net->T + t) * n;
    if (pp->reset_interval > 0 && (t + 1) % pp->reset_interval == 0) {
        memset(st->u, 0, n * 4);
        memset(st->v, 0, n * 4);
    }
    lif(n, st->u, st->v, st->vpre, st->s, st->a, pp->bias, bias_mask(t, pp->bias_onset), (uint32_t)pp->fu, (uint32_t)pp->fv,
        (int32_t)pp->vth, pp->spiking != 0);
    if (pp->learning)
        signal(net, pp, st->vpre, st->s, pp->target ? pp->target + off : NULL, st->third, st->err, st->psi, st->old,
               st->psi_now, st->y);
    if (pp->s_out)
        for (int64_t j = 0; j < n; j++) pp->s_out[off + j] = (uint8_t)st->s[j];
    if (pp->u_out) memcpy(pp->u_out + off, st->u, n * 4);
    if (pp->v_out) memcpy(pp->v_out + off, st->v, n * 4);
}

/* W . s (a plastic synapse, W [n_tgt, n_src]): one masked dot product per target */
static void dot_rows(int64_t nt, int64_t ns, const int32_t *restrict W, const int32_t *restrict s,
                     int32_t *restrict out) {
    for (int64_t i = 0; i < nt; i++) {
        int32_t acc = 0;
        for (int64_t j = 0; j < ns; j++) acc += W[i * ns + j] & -s[j];
        out[i] = acc;
    }
}

/* Wt^T . s (static, Wt [n_src, n_tgt]): the rows of the spiking sources */
static void add_rows(int64_t nt, int64_t ns, const int32_t *restrict Wt, const int32_t *restrict s,
                     int32_t *restrict out) {
    memset(out, 0, nt * 4);
    for (int64_t j = 0; j < ns; j++) {
        if (!s[j]) continue;
        const int32_t *restrict w = Wt + j * nt;
        for (int64_t i = 0; i < nt; i++) out[i] += w[i];
    }
}

/* Bt^T . e (feedback, Bt [n_src, n_tgt], graded errors) in int64 */
static void add_rows64(int64_t nt, int64_t ns, const int32_t *restrict Bt, const int32_t *restrict e,
                       int64_t *restrict out) {
    memset(out, 0, nt * 8);
    for (int64_t j = 0; j < ns; j++) {
        if (!e[j]) continue;
        const int32_t *restrict w = Bt + j * nt;
        const int64_t ej = e[j];
        for (int64_t i = 0; i < nt; i++) out[i] += w[i] * ej;
    }
}

static void deliver(const Net *net, const Syn *sy, SynState *ss, PopState *ps, int32_t **port_s, int64_t b) {
    const int64_t ns = sy->n_src, nt = sy->n_tgt;
    const int32_t *W = sy->w + b * sy->w_stride;
    PopState *tgt = ps + sy->tgt;
    if (sy->kind == 2) {
        add_rows64(nt, ns, W, ps[sy->src - net->n_ports].err, ss->sum64);
        for (int64_t i = 0; i < nt; i++) tgt->third[i] += (uint32_t)(uint64_t)scale(ss->sum64[i], sy->wexp);
        return;
    }
    const int32_t *s = sy->src < net->n_ports ? port_s[sy->src] : ps[sy->src - net->n_ports].s;
    if (sy->kind == 1)
        dot_rows(nt, ns, W, s, ss->sum);
    else
        add_rows(nt, ns, W, s, ss->sum);
    for (int64_t i = 0; i < nt; i++) tgt->a[i] += (uint32_t)(uint64_t)scale(ss->sum[i], sy->wexp);
}

typedef struct {
    int32_t alo, ahi, amin, amax, ws, wr, wlo, whi;
} Update;

/* acc += clip((val >> sh) << e7) with the accumulator clip (fixedpoint.product_value and add_products) */
static void accumulate(int64_t np, int32_t *restrict acc, const int32_t *restrict val, int32_t sh, int32_t e7,
                       const Update *u) {
    const int32_t lo = u->alo, hi = u->ahi;
    for (int64_t j = 0; j < np; j++) {
        int32_t v = clip32((int32_t)((uint32_t)(val[j] >> sh) << e7), lo, hi);
        acc[j] = clip32(acc[j] + v, lo, hi);
    }
}

/* fixedpoint.apply_weight_update of one row: sign-mode saturation, stochastic rounding, weight range */
static void row_update(int64_t np, int32_t *restrict W, const int32_t *restrict acc, const int32_t *restrict keep,
                       const Update *u) {
    const int32_t amin = u->amin, amax = u->amax, ws = u->ws, mask = (1 << u->ws) - 1, wr = u->wr;
    const int32_t wlo = u->wlo, whi = u->whi;
    for (int64_t j = 0; j < np; j++) {
        int32_t a = clip32(acc[j], amin, amax);
        W[j] = clip32((a >> ws) + ((a & mask) > wr), wlo, whi) & keep[j];
    }
}

/* The whole update of a row with one product P[j] * q (no per-synapse factors), in one pass */
static void row_single(int64_t np, int32_t *restrict W, const uint32_t *restrict P, uint32_t q, int32_t sh,
                       int32_t e7, const int32_t *restrict keep, const Update *u) {
    const int32_t lo = u->alo, hi = u->ahi, amin = u->amin, amax = u->amax, ws = u->ws, wr = u->wr;
    const int32_t mask = (1 << u->ws) - 1, wlo = u->wlo, whi = u->whi;
    for (int64_t j = 0; j < np; j++) {
        int32_t v = clip32((int32_t)((uint32_t)((int32_t)(P[j] * q) >> sh) << e7), lo, hi);
        int32_t a = clip32(clip32((int32_t)((uint32_t)W[j] << ws) + v, lo, hi), amin, amax);
        W[j] = clip32((a >> ws) + ((a & mask) > wr), wlo, whi) & keep[j];
    }
}

/* one step of fixedpoint.decay_trace: stochastic_floor(f * prev, r) */
static void decay_row(int64_t n, const int32_t *restrict prev, int32_t *restrict cur, double f, double r) {
    for (int64_t j = 0; j < n; j++) {
        double p = f * (double)prev[j];
        double w = floor(p);
        cur[j] = (int32_t)w + (r < p - w);
    }
}

/* fixedpoint.add_impulse where times[j] == tt (add: the whole part plus the rounded fraction) */
static void impulse_row(int64_t n, int32_t *restrict cur, const int32_t *restrict times, int32_t tt, int32_t add,
                        int32_t top) {
    for (int64_t j = 0; j < n; j++) cur[j] = times[j] == tt ? clip32(cur[j] + add, 0, top) : cur[j];
}

/* val[j] *= Yi[tx[j]]: selects for short epochs (they vectorize), else a gather */
static void times_at(int64_t np, int64_t te, const int32_t *restrict Yi, const int32_t *restrict tx,
                     int32_t *restrict val, int32_t *restrict g) {
    if (te > 8) {
        for (int64_t j = 0; j < np; j++) val[j] = (int32_t)((uint32_t)val[j] * (uint32_t)Yi[tx[j]]);
        return;
    }
    for (int64_t j = 0; j < np; j++) g[j] = Yi[0];
    for (int64_t tt = 1; tt <= te; tt++) {
        const int32_t y = Yi[tt];
        for (int64_t j = 0; j < np; j++) g[j] = tx[j] == tt ? y : g[j];
    }
    for (int64_t j = 0; j < np; j++) val[j] = (int32_t)((uint32_t)val[j] * (uint32_t)g[j]);
}

/* The learning phase of step k (fixedpoint.learn). */
static void learn(const Net *net, const Syn *sy, SynState *st, int64_t b, int64_t k) {
    const int64_t te = sy->t_epoch, np = sy->n_src, nq = sy->n_tgt;
    const int32_t TM = (int32_t)net->trace_max, alo = (int32_t)net->acc_lo, ahi = (int32_t)net->acc_hi;
    st->epochs++; /* == k / t_epoch */
    const int64_t di = sy->draw_row[b] * sy->draw_cols + st->epochs;
    const double rxd = sy->x_decay[di], ryd = sy->y_decay[di];
    const int64_t rxi = sy->x_imp[di]; /* y impulses are 0: their draw (r < 0) never adds */
    const int32_t wr = sy->w_round[di];
    int32_t *restrict xh = st->xh, *restrict yh = st->yh, *restrict tx = st->tx, *restrict ty = st->ty;
    memcpy(xh, st->x, 2 * np * 4);
    memcpy(yh, st->y, 3 * nq * 4);
    for (int64_t tt = 1; tt <= te; tt++) {
        for (int kk = 0; kk < 2; kk++) {
            int32_t *cur = xh + (tt * 2 + kk) * np;
            if (sy->tau_nonzero[kk])
                decay_row(np, xh + ((tt - 1) * 2 + kk) * np, cur, sy->x_factor[kk], rxd);
            else
                memset(cur, 0, np * 4);
            impulse_row(np, cur, tx, (int32_t)tt, (int32_t)sy->imp_whole[kk] + (rxi < sy->imp_frac[kk]), TM);
        }
        for (int kk = 0; kk < 3; kk++) {
            if (!st->y_used[kk]) continue; /* y histories are not state: only the factors read them */
            int32_t *cur = yh + (tt * 3 + kk) * nq;
            decay_row(nq, yh + ((tt - 1) * 3 + kk) * nq, cur, sy->y_factor, ryd);
            impulse_row(nq, cur, ty, (int32_t)tt, 0, TM);
        }
    }
    const int u = sy->decimate > 0 && (k / te) % sy->decimate == 0;
    int32_t *xrow = st->xrow, *ycol = st->ycol;
    int any_active = 0;
    for (int64_t p = 0; p < sy->n_prod; p++) {
        const Prod *pr = sy->prod + p;
        ProdRun *r = st->run + p;
        r->active = pr->dep != 2 || u;
        if (!r->active) continue;
        any_active = 1;
        r->sh = (int32_t)pr->shift;
        r->e7 = sy->expo[b * sy->n_prod + p];
        r->nw = r->nx = r->ny = 0;
        uint32_t *restrict P = r->P = st->P + p * np, *restrict Q = r->Q = st->Q + p * nq;
        const uint32_t m = (uint32_t)sy->mant[b * sy->n_prod + p];
        for (int64_t j = 0; j < np; j++) P[j] = pr->dep == 0 ? m * (uint32_t)(tx[j] > 0) : m;
        for (int64_t i = 0; i < nq; i++) Q[i] = pr->dep == 1 ? (uint32_t)(ty[i] > 0) : 1u;
        for (int64_t f = 0; f < pr->n_factors; f++) {
            const int64_t var = pr->var[f];
            const int32_t c = (int32_t)pr->cst[f], lo = (int32_t)pr->lo[f], hi = (int32_t)pr->hi[f];
            if (var == 0) {
                for (int64_t j = 0; j < np; j++) P[j] *= (uint32_t)clip32((tx[j] > 0) + c, lo, hi);
            } else if (var == 3) {
                for (int64_t i = 0; i < nq; i++) Q[i] *= (uint32_t)clip32((ty[i] > 0) + c, lo, hi);
            } else if (var == 7) {
                r->wc[r->nw] = c, r->wlo[r->nw] = lo, r->whi[r->nw] = hi;
                r->nw++;
            } else if (var <= 2) { /* x1, x2 */
                const int64_t kk = var - 1;
                if (pr->dep == 0) {
                    for (int64_t j = 0; j < np; j++)
                        P[j] *= (uint32_t)clip32(xh[(tx[j] * 2 + kk) * np + j] + c, lo, hi);
                } else if (pr->dep == 2) {
                    for (int64_t j = 0; j < np; j++) P[j] *= (uint32_t)clip32(xh[(te * 2 + kk) * np + j] + c, lo, hi);
                } else { /* y0: the pre trace at each post neuron's bAP time */
                    int32_t *X = r->X[r->nx++] = xrow;
                    for (int64_t tt = 0; tt <= te; tt++)
                        for (int64_t j = 0; j < np; j++)
                            X[tt * np + j] = clip32(xh[(tt * 2 + kk) * np + j] + c, lo, hi);
                    xrow += (te + 1) * np;
                }
            } else { /* y1 - y3 */
                const int64_t kk = var - 4;
                if (pr->dep == 1) {
                    for (int64_t i = 0; i < nq; i++)
                        Q[i] *= (uint32_t)clip32(yh[(ty[i] * 3 + kk) * nq + i] + c, lo, hi);
                } else if (pr->dep == 2) {
                    for (int64_t i = 0; i < nq; i++) Q[i] *= (uint32_t)clip32(yh[(te * 3 + kk) * nq + i] + c, lo, hi);
                } else { /* x0: the post trace at each pre neuron's spike time */
                    int32_t *Y = r->Y[r->ny++] = ycol;
                    for (int64_t i = 0; i < nq; i++)
                        for (int64_t tt = 0; tt <= te; tt++)
                            Y[i * (te + 1) + tt] = clip32(yh[(tt * 3 + kk) * nq + i] + c, lo, hi);
                    ycol += (te + 1) * nq;
                }
            }
        }
    }
    int32_t *restrict Wb = sy->w + b * sy->w_stride, *restrict acc = st->acc, *restrict val = st->val;
    const int32_t *keep = sy->keep + b * sy->keep_stride;
    const int32_t ws = (int32_t)net->wacc_shift;
    const Update up = {alo, ahi, (int32_t)sy->acc_min, (int32_t)sy->acc_max, ws, wr, (int32_t)sy->w_lo,
                       (int32_t)sy->w_hi};
    for (int64_t i = 0; any_active && i < nq; i++) {
        int touched = 0, last = 0;
        for (int64_t p = 0; p < sy->n_prod; p++)
            if (st->run[p].active && st->run[p].Q[i] != 0) touched++, last = (int)p;
        if (!touched) continue; /* every product is 0: acc = w << 7 gives back w */
        int32_t *restrict W = Wb + i * np;
        const ProdRun *one = st->run + last;
        if (touched == 1 && one->nw + one->nx + one->ny == 0) {
            row_single(np, W, one->P, one->Q[i], one->sh, one->e7, keep + i * np, &up);
            continue;
        }
        for (int64_t j = 0; j < np; j++) acc[j] = (int32_t)((uint32_t)W[j] << ws);
        for (int64_t p = 0; p < sy->n_prod; p++) {
            const ProdRun *r = st->run + p;
            if (!r->active || r->Q[i] == 0) continue;
            const uint32_t q = r->Q[i];
            const uint32_t *restrict P = r->P;
            for (int64_t j = 0; j < np; j++) val[j] = (int32_t)(P[j] * q);
            for (int f = 0; f < r->nw; f++) {
                const int32_t c = r->wc[f], lo = r->wlo[f], hi = r->whi[f];
                for (int64_t j = 0; j < np; j++)
                    val[j] = (int32_t)((uint32_t)val[j] * (uint32_t)clip32(W[j] + c, lo, hi));
            }
            for (int f = 0; f < r->nx; f++) {
                const int32_t *restrict X = r->X[f] + ty[i] * np;
                for (int64_t j = 0; j < np; j++) val[j] = (int32_t)((uint32_t)val[j] * (uint32_t)X[j]);
            }
            for (int f = 0; f < r->ny; f++) times_at(np, te, r->Y[f] + i * (te + 1), tx, val, st->gather);
            accumulate(np, acc, val, r->sh, r->e7, &up);
        }
        row_update(np, W, acc, keep + i * np, &up);
    }
    memcpy(st->x, xh + te * 2 * np, 2 * np * 4);
    memset(tx, 0, np * 4);
    memset(ty, 0, nq * 4);
}

/* receive_traces, learn when due, recording */
static void plastic_step(const Net *net, const Syn *sy, SynState *st, PopState *ps, int32_t **port_s, int64_t b,
                         int64_t t) {
    const int64_t k = t + 1, te = sy->t_epoch, np = sy->n_src, nq = sy->n_tgt;
    const int32_t within = (int32_t)(k % te ? k % te : te), TM = (int32_t)net->trace_max;
    const int32_t *pre = sy->src < net->n_ports ? port_s[sy->src] : ps[sy->src - net->n_ports].s;
    const PopState *post = ps + sy->tgt;
    int32_t *restrict x = st->x, *restrict tx = st->tx;
    const int32_t add0 = (int32_t)sy->imp_whole[0] + (0 < sy->imp_frac[0]);
    const int32_t add1 = (int32_t)sy->imp_whole[1] + (0 < sy->imp_frac[1]);
    for (int64_t j = 0; j < np; j++) {
        if (!pre[j]) continue;
        if (tx[j] > 0) {
            x[j] = clip32(x[j] + add0, 0, TM);
            x[np + j] = clip32(x[np + j] + add1, 0, TM);
        }
        tx[j] = within;
    }
    if (sy->bap)
        for (int64_t i = 0; i < nq; i++)
            if (post->s[i]) st->ty[i] = within;
    memcpy(st->y, post->y, 3 * nq * 4);
    if (k % te == 0) learn(net, sy, st, b, k);
    const int64_t T = net->T;
    for (int kk = 0; kk < 2; kk++)
        if (sy->x_out[kk]) memcpy(sy->x_out[kk] + (b * T + t) * np, x + kk * np, np * 4);
    for (int kk = 0; kk < 3; kk++)
        if (sy->y_out[kk]) memcpy(sy->y_out[kk] + (b * T + t) * nq, st->y + kk * nq, nq * 4);
    if (sy->ckpt && sy->ckpt_every > 0 && k % sy->ckpt_every == 0 && k / sy->ckpt_every <= sy->n_ckpt)
        memcpy(sy->ckpt + ((b * sy->n_ckpt) + k / sy->ckpt_every - 1) * nq * np, sy->w + b * sy->w_stride, nq * np * 4);
}

/* Learners [b0, b1). Returns 0, or -1 when the state could not be allocated. */
int64_t plastic_run(const Net *net, int64_t b0, int64_t b1) {
    PopState *ps = calloc(net->n_pops + 1, sizeof(PopState));
    SynState *ss = calloc(net->n_syns + 1, sizeof(SynState));
    int32_t **port_s = calloc(net->n_ports + 1, sizeof(int32_t *));
    Arena A = {NULL, 0};
    int64_t rc = -1;
    if (!ps || !ss || !port_s) goto done;
    layout(net, &A, ps, ss, port_s);
    A.base = aligned_alloc(64, (A.used + 63) & ~(size_t)63);
    if (!A.base) goto done;
    size_t total = A.used;
    A.used = 0;
    layout(net, &A, ps, ss, port_s);
    for (int64_t b = b0; b < b1; b++) {
        memset(A.base, 0, total);
        for (int64_t k = 0; k < net->n_syns; k++) ss[k].epochs = 0;
        for (int64_t t = 0; t < net->T; t++) {
            for (int64_t q = 0; q < net->n_ports; q++) {
                const int64_t n = net->port_n[q];
                const uint8_t *src = net->port_data[q] + (b * net->T + t) * n;
                for (int64_t j = 0; j < n; j++) port_s[q][j] = src[j];
            }
            for (int64_t p = 0; p < net->n_pops; p++) pop_step(net, net->pops + p, ps + p, b, t);
            for (int64_t p = 0; p < net->n_pops; p++) {
                memset(ps[p].a, 0, net->pops[p].n * 4);
                memset(ps[p].third, 0, net->pops[p].n * 4);
            }
            for (int64_t k = 0; k < net->n_syns; k++) deliver(net, net->syns + k, ss + k, ps, port_s, b);
            for (int64_t k = 0; k < net->n_syns; k++)
                if (net->syns[k].kind == 1) plastic_step(net, net->syns + k, ss + k, ps, port_s, b, t);
        }
    }
    rc = 0;
done:
    free(A.base);
    free(ps);
    free(ss);
    free(port_s);
    return rc;
}
