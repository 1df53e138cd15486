/* answer.h — reading a final answer out of model text: \boxed{} contents, GSM8K-style numbers, and MATH
 * answer normalisation and equivalence. Plain C, no dependencies: compiled into the grader helper library
 * and into the dataset loaders (the MATH loader takes a solution's last \boxed{} as the reference answer, so
 * grading and loading read \boxed{} the same way). */
#ifndef T2G_ANSWER_H
#define T2G_ANSWER_H

#include <stddef.h>

/* The contents of the last complete \boxed{...} (or \fbox{...}) in s, braces matched as the MATH reference
 * does (every { and } counts); "\boxed 5" (no braces) gives the text up to the next '$' or space. An
 * incomplete last box (cut-off output) falls back to the previous complete one. NULL when there is none.
 * Caller frees with free(). */
char *t2g_last_boxed(const char *s);

/* How t2g_find_number found its number. */
typedef enum t2g_num_how { T2G_NUM_NONE = 0, T2G_NUM_HASHES, T2G_NUM_BOXED, T2G_NUM_ANSWER_IS, T2G_NUM_LAST } t2g_num_how;

/* GSM8K answer extraction: the first number after the last "####"; else the first number in the last
 * \boxed{}; else the first number after the last "answer is"; else the last number in s. Numbers may carry
 * a sign, thousands commas (groups of three) and decimals; "$", "%" and a Unicode minus are understood.
 * Writes the number as plain text ("-1234.5") to out and returns how it was found (T2G_NUM_NONE: none). */
t2g_num_how t2g_find_number(const char *s, char *out, size_t cap);

/* Parse a whole string as a number in the same syntax (surrounding spaces, "$", "%", commas allowed).
 * Returns 1 and sets *v on success. */
int t2g_parse_number(const char *s, double *v);

/* Two numbers are equal: integers exactly, others within 1e-9 relative (absolute below 1). */
int t2g_num_equal(double a, double b);

/* MATH answer normalisation (whitespace, \left/\right, \dfrac/\tfrac, \text{} and units, degrees, percent,
 * dollars, "x =" prefixes, \sqrt3 and \frac12 shorthands, thousands separators, a/b -> \frac{a}{b}).
 * Caller frees with free(); NULL only when out of memory. */
char *t2g_math_normalize(const char *s);

/* MATH equivalence: equal normalised strings; or both evaluate to the same number (integers, decimals,
 * \frac, \sqrt, \pi, + - * / ^, implicit products); or element-wise equal tuples/intervals (delimiters must
 * match) and, without delimiters, equal unordered lists. 1 equal, 0 not. */
int t2g_math_equal(const char *a, const char *b);

/* Evaluate a normalised answer as a real number; 1 on success. Exposed for tests. */
int t2g_math_eval(const char *normalized, double *v);

#endif
