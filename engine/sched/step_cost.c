/*
 * step_cost.c - learning the step cost model from timed steps (see
 * step_cost.h).
 *
 * The fit minimises the relative error Σ ((est_i - ns_i) / ns_i)² over the
 * window, with every coefficient >= 0: a step that took 10x longer than
 * it should (the machine was busy) costs the fit no more than a step that
 * took a tenth, and a negative coefficient (which would let a bigger
 * chunk look cheaper) is never used.  With three unknowns the
 * non-negative least squares is solved exactly by trying every subset of
 * the three terms, solving each subset's normal equations, and keeping
 * the best fit whose coefficients are all >= 0.
 */
#include "step_cost.h"

#include <math.h>
#include <string.h>

void cost_fit_init(cost_fit_t *f)
{
    memset(f, 0, sizeof *f);
}

/* The j-th term of entry i: 1, tokens or pairs. */
static double term(const cost_fit_t *f, uint32_t i, int j)
{
    return j == 0 ? 1.0 : j == 1 ? f->tokens[i] : f->pairs[i];
}

/*
 * Solve the k x k system a·x = b in place (Gaussian elimination with
 * partial pivoting).  Returns 0, or -1 when it is (nearly) singular: a
 * term the window cannot tell from the others (every step of the same
 * size, say) is left to a smaller subset.
 */
static int solve(double a[3][3], double b[3], int k, double x[3])
{
    double big = 0.0; /* the singularity test is relative to the matrix's size */
    for (int r = 0; r < k; r++)
        for (int c = 0; c < k; c++)
            big = fmax(big, fabs(a[r][c]));
    for (int c = 0; c < k; c++) {
        int p = c;
        for (int r = c + 1; r < k; r++)
            if (fabs(a[r][c]) > fabs(a[p][c]))
                p = r;
        if (!(fabs(a[p][c]) > 1e-9 * big))
            return -1;
        if (p != c) {
            for (int j = 0; j < k; j++) {
                double t = a[c][j];
                a[c][j] = a[p][j];
                a[p][j] = t;
            }
            double t = b[c];
            b[c] = b[p];
            b[p] = t;
        }
        for (int r = c + 1; r < k; r++) {
            double m = a[r][c] / a[c][c];
            for (int j = c; j < k; j++)
                a[r][j] -= m * a[c][j];
            b[r] -= m * b[c];
        }
    }
    for (int c = k - 1; c >= 0; c--) {
        double s = b[c];
        for (int j = c + 1; j < k; j++)
            s -= a[c][j] * x[j];
        x[c] = s / a[c][c];
    }
    return 0;
}

/*
 * Fit the terms in `mask` (bit j: term j).  The terms are scaled to at
 * most 1 over the window first, so that the normal equations of a
 * constant, token counts and pair counts (up to 10^8) stay well
 * conditioned.  Returns the weighted squared error, or INFINITY when the
 * subset is singular or needs a negative coefficient.
 */
static double fit_subset(const cost_fit_t *f, unsigned mask, const double scale[3], double coef[3])
{
    int idx[3], k = 0;
    for (int j = 0; j < 3; j++)
        if (mask & (1u << j))
            idx[k++] = j;
    double a[3][3] = { { 0 } }, b[3] = { 0 }, x[3] = { 0 };
    for (uint32_t i = 0; i < f->n; i++) {
        double w = 1.0 / (f->ns[i] * f->ns[i]); /* relative error */
        for (int r = 0; r < k; r++) {
            double tr = term(f, i, idx[r]) / scale[idx[r]];
            b[r] += w * tr * f->ns[i];
            for (int c = 0; c < k; c++)
                a[r][c] += w * tr * term(f, i, idx[c]) / scale[idx[c]];
        }
    }
    if (solve(a, b, k, x) != 0)
        return INFINITY;
    for (int r = 0; r < k; r++)
        if (!(x[r] >= 0.0))
            return INFINITY;
    memset(coef, 0, 3 * sizeof coef[0]);
    for (int r = 0; r < k; r++)
        coef[idx[r]] = x[r] / scale[idx[r]];
    double err = 0.0;
    for (uint32_t i = 0; i < f->n; i++) {
        double est = coef[0] + coef[1] * f->tokens[i] + coef[2] * f->pairs[i];
        double d = (est - f->ns[i]) / f->ns[i];
        err += d * d;
    }
    return err;
}

void cost_fit_add(cost_fit_t *f, uint64_t tokens, uint64_t pairs, uint64_t ns)
{
    if (tokens == 0 || ns == 0)
        return;
    f->tokens[f->next] = (double)tokens;
    f->pairs[f->next] = (double)pairs;
    f->ns[f->next] = (double)ns;
    f->next = (f->next + 1) % COST_WINDOW;
    if (f->n < COST_WINDOW)
        f->n++;
    if (f->n < COST_MIN_STEPS)
        return;
    double scale[3] = { 1.0, 1.0, 1.0 };
    for (uint32_t i = 0; i < f->n; i++) {
        scale[1] = fmax(scale[1], f->tokens[i]);
        scale[2] = fmax(scale[2], f->pairs[i]);
    }
    /*
     * Subsets with the per-token term first: when the window cannot tell
     * the constant from the tokens (every step had the same number of
     * tokens: decodes only), equal fits keep the first, which charges the
     * time to the tokens, so that a prefill chunk never looks free.
     */
    static const unsigned order[7] = { 2, 3, 6, 7, 1, 4, 5 };
    double best = INFINITY, coef[3], keep[3] = { 0 };
    for (int o = 0; o < 7; o++) {
        double e = fit_subset(f, order[o], scale, coef);
        if (e < INFINITY && (best == INFINITY || e < best * (1.0 - 1e-9))) {
            best = e;
            memcpy(keep, coef, sizeof keep);
        }
    }
    if (best < INFINITY)
        f->fit = (sched_cost_t){ keep[0], keep[1], keep[2], scale[1] };
}
