/* ana_math.h — small statistics helpers shared by analysis/: entropy, Jensen-Shannon
 * divergence, the chi-square survival function (regularised upper incomplete gamma) for
 * G-tests and chi-square tests, and the G-test of independence of a contingency table. */
#ifndef MOESCOPE_ANA_MATH_H
#define MOESCOPE_ANA_MATH_H

/* Shannon entropy (bits) of a count vector; 0 when empty. */
double ana_entropy_bits(const long long *c, int n);

/* Jensen-Shannon divergence (bits, 0..1) between two count vectors, each normalised. */
double ana_js_bits(const long long *a, const long long *b, int n);

/* P(X >= x) for X ~ chi-square with df degrees of freedom (1 when x <= 0). */
double ana_chi2_sf(double x, double df);

/* G-test of independence of an r x c table (row-major counts). Rows/columns that are all
 * zero are dropped from the degrees of freedom. Fills g (the G statistic = 2 sum O ln(O/E)),
 * df, p (chi-square survival) and Cramer's V = sqrt(G / (N (min(r', c') - 1))) (an effect
 * size in 0..1 computed from G in place of Pearson's X^2). Any pointer may be NULL. */
void ana_gtest(const long long *tab, int r, int c, double *g, double *df, double *p, double *v);

#endif
