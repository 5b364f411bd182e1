/* ana_math.c — entropy, JS divergence, chi-square survival function and G-test. See
 * ana_math.h. The incomplete gamma follows the classic series / continued-fraction split
 * (series for x < a + 1, Lentz continued fraction otherwise). */
#include "analysis/ana_math.h"

#include <math.h>
#include <stdlib.h>

double ana_entropy_bits(const long long *c, int n) {
  double t = 0, h = 0;
  for (int i = 0; i < n; i++) t += (double)c[i];
  if (t <= 0) return 0;
  for (int i = 0; i < n; i++)
    if (c[i] > 0) { double p = (double)c[i] / t; h -= p * log2(p); }
  return h;
}

double ana_js_bits(const long long *a, const long long *b, int n) {
  double ta = 0, tb = 0, js = 0;
  for (int i = 0; i < n; i++) { ta += (double)a[i]; tb += (double)b[i]; }
  if (ta <= 0 || tb <= 0) return NAN;
  for (int i = 0; i < n; i++) {
    double p = (double)a[i] / ta, q = (double)b[i] / tb, m = 0.5 * (p + q);
    if (p > 0) js += 0.5 * p * log2(p / m);
    if (q > 0) js += 0.5 * q * log2(q / m);
  }
  return js < 0 ? 0 : js;
}

/* Regularised upper incomplete gamma Q(a, x). */
static double gamma_q(double a, double x) {
  if (x <= 0) return 1;
  double lg = lgamma(a);
  if (x < a + 1) {
    double sum = 1 / a, del = sum, ap = a;
    for (int n = 0; n < 10000; n++) {
      ap += 1; del *= x / ap; sum += del;
      if (fabs(del) < fabs(sum) * 1e-15) break;
    }
    double pv = sum * exp(-x + a * log(x) - lg);
    return pv >= 1 ? 0 : 1 - pv;
  }
  double b = x + 1 - a, c = 1e300, d = 1 / b, h = d;
  for (int i = 1; i < 10000; i++) {
    double an = -i * (i - a);
    b += 2;
    d = an * d + b; if (fabs(d) < 1e-300) d = 1e-300;
    c = b + an / c; if (fabs(c) < 1e-300) c = 1e-300;
    d = 1 / d;
    double del = d * c;
    h *= del;
    if (fabs(del - 1) < 1e-15) break;
  }
  return exp(-x + a * log(x) - lg) * h;
}

double ana_chi2_sf(double x, double df) {
  if (!(df > 0)) return NAN;
  if (!(x > 0)) return 1;
  return gamma_q(df / 2, x / 2);
}

void ana_gtest(const long long *tab, int r, int c, double *g, double *df, double *p, double *v) {
  double *rs = calloc((size_t)r + 1, sizeof *rs), *cs = calloc((size_t)c + 1, sizeof *cs), n = 0, G = 0;
  if (!rs || !cs) { free(rs); free(cs); if (g) *g = NAN; if (df) *df = NAN; if (p) *p = NAN; if (v) *v = NAN; return; }
  for (int i = 0; i < r; i++)
    for (int j = 0; j < c; j++) { double o = (double)tab[(size_t)i * c + j]; rs[i] += o; cs[j] += o; n += o; }
  int rr = 0, cc = 0;
  for (int i = 0; i < r; i++) rr += rs[i] > 0;
  for (int j = 0; j < c; j++) cc += cs[j] > 0;
  for (int i = 0; i < r; i++)
    for (int j = 0; j < c; j++) {
      double o = (double)tab[(size_t)i * c + j];
      if (o > 0) G += 2 * o * log(o * n / (rs[i] * cs[j]));
    }
  if (G < 0) G = 0;
  double d = (double)(rr - 1) * (double)(cc - 1);
  int m = rr < cc ? rr : cc;
  if (g) *g = n > 0 ? G : NAN;
  if (df) *df = d;
  if (p) *p = d > 0 ? ana_chi2_sf(G, d) : NAN;
  if (v) *v = n > 0 && m > 1 ? sqrt(G / (n * (m - 1))) : NAN;
  free(rs); free(cs);
}
