/* MATH answer normalisation and equivalence (see answer.h).
 *
 * The normalisation follows the rules of the MATH benchmark's own equivalence check (strip whitespace,
 * \left/\right, units, degrees, percent and dollar signs, "x =" prefixes; repair \sqrt3 and \frac12
 * shorthands) and adds what the reference graders miss: an evaluator for numeric forms, so that 0.5,
 * \frac{1}{2}, 1/2 and \dfrac12 agree and 2\sqrt{2} equals \sqrt{8}; and element-wise comparison of
 * tuples, intervals and lists. */
#include "answer.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_LEN = 4096, MAX_DEPTH = 64 };

/* ---------------- a tiny string builder ---------------- */

typedef struct sb {
    char *p;
    size_t n, cap;
    int oom;
} sb;

static void sb_putn(sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(sb *b, const char *s) { sb_putn(b, s, strlen(s)); }
static void sb_putc(sb *b, char c) { sb_putn(b, &c, 1); }

/* Replace every occurrence of `from` in *s (owned) with `to`; returns the new string (old one freed). */
static char *replace_all(char *s, const char *from, const char *to) {
    if (!s || !strstr(s, from)) return s;
    sb b = {0};
    size_t fl = strlen(from);
    const char *p = s, *q;
    while ((q = strstr(p, from))) {
        sb_putn(&b, p, (size_t)(q - p));
        sb_puts(&b, to);
        p = q + fl;
    }
    sb_puts(&b, p);
    free(s);
    return b.oom ? (free(b.p), NULL) : b.p ? b.p : strdup("");
}

/* Index of the brace closing the one at s[open] (s[open] == '{'), or -1. */
static long match_brace(const char *s, size_t open) {
    int depth = 0;
    for (size_t i = open; s[i]; i++) {
        if (s[i] == '{') depth++;
        else if (s[i] == '}' && --depth == 0) return (long)i;
    }
    return -1;
}

/* Replace \cmd{X} by X for every occurrence of the command. */
static char *unwrap(char *s, const char *cmd) {
    size_t cl = strlen(cmd);
    for (int guard = 0; s && guard < 1000; guard++) {
        char *p = strstr(s, cmd);
        while (p && p[cl] != '{') p = strstr(p + 1, cmd);
        if (!p) break;
        size_t open = (size_t)(p - s) + cl;
        long close = match_brace(s, open);
        if (close < 0) break;
        sb b = {0};
        sb_putn(&b, s, (size_t)(p - s));
        sb_putn(&b, s + open + 1, (size_t)close - open - 1);
        sb_puts(&b, s + close + 1);
        free(s);
        if (b.oom) return free(b.p), NULL;
        s = b.p ? b.p : strdup("");
    }
    return s;
}

static int is_unit_text(const char *s, size_t n) {
    int letters = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalpha(c)) letters++;
        else if (!(c == ' ' || c == '.' || c == '^' || isdigit(c) || c == '/')) return 0;
    }
    return letters > 0;
}

/* "5\text{ cm}^2" -> "5": a trailing \text{}/\mbox{} of unit words after something else is dropped. */
static char *drop_units(char *s) {
    static const char *const cmds[] = {"\\text{", "\\mbox{", "\\mathrm{", "\\textnormal{"};
    for (int c = 0; s && c < 4; c++) {
        char *p = NULL;
        for (char *q = s; (q = strstr(q, cmds[c])); q++) p = q;
        if (!p) continue;
        size_t open = (size_t)(p - s) + strlen(cmds[c]) - 1;
        long close = match_brace(s, open);
        if (close < 0) continue;
        const char *after = s + close + 1;
        while (*after == ' ') after++;
        if (*after == '^') {   /* cm^2, cm^{3} */
            after++;
            if (*after == '{') {
                long cl = match_brace(after, 0);
                after = cl >= 0 ? after + cl + 1 : after;
            } else if (*after) after++;
        }
        while (*after == ' ' || *after == '.') after++;
        int before = 0;
        for (char *q = s; q < p; q++)
            if (!isspace((unsigned char)*q)) before = 1;
        if (*after || !before || !is_unit_text(s + open + 1, (size_t)close - open - 1)) continue;
        *p = 0;
    }
    return s;
}

static char *strip_edges(char *s) {
    if (!s) return s;
    size_t a = 0, n = strlen(s);
    while (a < n && isspace((unsigned char)s[a])) a++;
    while (n > a && isspace((unsigned char)s[n - 1])) n--;
    memmove(s, s + a, n - a);
    s[n - a] = 0;
    return s;
}

/* \sqrt3 -> \sqrt{3} */
static char *fix_sqrt(char *s) {
    if (!s || !strstr(s, "\\sqrt")) return s;
    sb b = {0};
    for (const char *p = s; *p;) {
        if (!strncmp(p, "\\sqrt", 5) && p[5] && p[5] != '{' && p[5] != '[' && !isalpha((unsigned char)p[5])) {
            sb_puts(&b, "\\sqrt{");
            sb_putc(&b, p[5]);
            sb_putc(&b, '}');
            p += 6;
        } else sb_putc(&b, *p++);
    }
    free(s);
    return b.oom ? (free(b.p), NULL) : b.p;
}

/* \frac12 -> \frac{1}{2}, \frac1{2} -> \frac{1}{2}, \frac{1}2 -> \frac{1}{2} */
static char *fix_fracs(char *s) {
    if (!s || !strstr(s, "\\frac")) return s;
    sb b = {0};
    for (const char *p = s; *p;) {
        if (strncmp(p, "\\frac", 5) || isalpha((unsigned char)p[5])) {
            sb_putc(&b, *p++);
            continue;
        }
        sb_puts(&b, "\\frac");
        p += 5;
        for (int arg = 0; arg < 2 && *p; arg++) {
            if (*p == '{') {
                long c = match_brace(p, 0);
                if (c < 0) break;
                sb_putn(&b, p, (size_t)c + 1);
                p += c + 1;
            } else if (*p == '\\') {
                break;   /* \frac\pi2: leave as is */
            } else {
                sb_putc(&b, '{');
                sb_putc(&b, *p++);
                sb_putc(&b, '}');
            }
        }
    }
    free(s);
    return b.oom ? (free(b.p), NULL) : b.p;
}

static int all_digits(const char *s, size_t n) {
    if (!n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return 0;
    return 1;
}

/* "1,234,567" -> "1234567" when the whole string is one such number */
static void drop_thousands(char *s) {
    const char *p = s;
    if (*p == '-') p++;
    size_t lead = strspn(p, "0123456789");
    if (lead < 1 || lead > 3 || p[lead] != ',') return;
    const char *q = p + lead;
    while (*q == ',') {
        if (!all_digits(q + 1, 3) || isdigit((unsigned char)q[4])) return;
        q += 4;
    }
    if (*q == '.') {
        if (!all_digits(q + 1, strspn(q + 1, "0123456789")) || q[1 + strspn(q + 1, "0123456789")]) return;
    } else if (*q) return;
    size_t k = 0;
    for (size_t i = 0; s[i]; i++)
        if (s[i] != ',') s[k++] = s[i];
    s[k] = 0;
}

char *t2g_math_normalize(const char *in) {
    if (!in) return strdup("");
    char *s = strndup(in, MAX_LEN);
    if (!s) return NULL;
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t' || *p == '\x01') *p = ' ';
    /* the row separator \\ stays whole: hidden from the spacing rules ("\ " is a space) until the end */
    s = replace_all(s, "\\\\", "\x01");
    static const char *const spacing[] = {"\\!", "\\,", "\\;", "\\:", "\\ ", "~", "\\quad", "\\qquad", "\\displaystyle", NULL};
    for (int i = 0; spacing[i]; i++) s = replace_all(s, spacing[i], " ");
    s = replace_all(s, "\\tfrac", "\\frac");
    s = replace_all(s, "\\dfrac", "\\frac");
    s = replace_all(s, "\\dbinom", "\\binom");
    s = replace_all(s, "\\tbinom", "\\binom");
    /* \left( and \right) but not \leftarrow or \rightarrow */
    static const char *const lr[] = {"\\left", "\\right", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr", NULL};
    for (int i = 0; lr[i] && s; i++) {
        size_t l = strlen(lr[i]);
        for (char *p = strstr(s, lr[i]); p; p = strstr(p, lr[i])) {
            if (isalpha((unsigned char)p[l])) {
                p += l;
                continue;
            }
            memmove(p, p + l, strlen(p + l) + 1);
        }
    }
    s = drop_units(s);
    static const char *const wrappers[] = {"\\text", "\\textbf", "\\textit", "\\mathrm", "\\mathbf", "\\mbox",
                                           "\\textnormal", "\\operatorname", "\\boxed", NULL};
    for (int i = 0; wrappers[i]; i++) s = unwrap(s, wrappers[i]);
    s = replace_all(s, "\\$", "");
    s = replace_all(s, "$", "");
    s = replace_all(s, "\\%", "");
    s = replace_all(s, "%", "");
    static const char *const degrees[] = {"^{\\circ}", "^\\circ", "\\circ", "\\degree", "\xc2\xb0", NULL};
    for (int i = 0; degrees[i]; i++) s = replace_all(s, degrees[i], "");
    s = strip_edges(s);
    if (!s) return NULL;
    /* a sentence's full stop */
    size_t n = strlen(s);
    while (n && (s[n - 1] == '.' || s[n - 1] == ' ')) s[--n] = 0;
    /* "x = 5", "k=3": drop a short left-hand side */
    char *eq = strchr(s, '=');
    if (eq && !strchr(eq + 1, '=')) {
        size_t lhs = 0;
        for (char *p = s; p < eq; p++)
            if (!isspace((unsigned char)*p)) lhs++;
        if (lhs > 0 && lhs <= 2) memmove(s, eq + 1, strlen(eq + 1) + 1);
    }
    /* spaces carry no meaning once units and text are gone */
    size_t k = 0;
    for (size_t i = 0; s[i]; i++)
        if (s[i] != ' ') s[k++] = s[i];
    s[k] = 0;
    s = fix_sqrt(s);
    s = fix_fracs(s);
    s = replace_all(s, "{,}", "");
    if (!s) return NULL;
    drop_thousands(s);
    /* ".5" -> "0.5" at the start and after an opening or separating character */
    if (strchr(s, '.')) {
        sb b = {0};
        for (size_t i = 0; s[i]; i++) {
            if (s[i] == '.' && isdigit((unsigned char)s[i + 1]) && (i == 0 || strchr("{(,[-+=", s[i - 1])))
                sb_putc(&b, '0');
            sb_putc(&b, s[i]);
        }
        free(s);
        if (b.oom) return free(b.p), NULL;
        s = b.p;
    }
    /* "a/b" of two integers -> \frac{a}{b} */
    char *slash = strchr(s, '/');
    if (slash && !strchr(slash + 1, '/')) {
        const char *a = s[0] == '-' ? s + 1 : s;
        if (all_digits(a, (size_t)(slash - a)) && all_digits(slash + 1, strlen(slash + 1))) {
            char *r = NULL;
            if (asprintf(&r, "%s\\frac{%.*s}{%s}", s[0] == '-' ? "-" : "", (int)(slash - a), a, slash + 1) < 0) r = NULL;
            free(s);
            s = r;
            if (!s) return NULL;
        }
    }
    s = replace_all(s, "\x01", "\\\\");
    if (!s) return NULL;
    /* "(C)" -> "C": a multiple-choice letter */
    if (strlen(s) == 3 && s[0] == '(' && s[2] == ')' && isupper((unsigned char)s[1])) {
        s[0] = s[1];
        s[1] = 0;
    }
    return s;
}

/* ---------------- numeric evaluation ---------------- */

typedef struct ev {
    const char *s;
    size_t i;
    int depth, bad;
} ev;

static double expr(ev *e);

static int peek_cmd(ev *e, const char *cmd) {
    size_t l = strlen(cmd);
    return !strncmp(e->s + e->i, cmd, l) && !isalpha((unsigned char)e->s[e->i + l]);
}

static double braced(ev *e, char open, char close) {
    if (e->s[e->i] != open) {
        e->bad = 1;
        return NAN;
    }
    e->i++;
    double v = expr(e);
    if (e->s[e->i] != close) {
        e->bad = 1;
        return NAN;
    }
    e->i++;
    return v;
}

static double atom(ev *e) {
    if (++e->depth > MAX_DEPTH) {
        e->bad = 1;
        return NAN;
    }
    const char *s = e->s;
    double v = NAN;
    char c = s[e->i];
    if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)s[e->i + 1]))) {
        /* plain decimals only (strtod alone would also read exponents and hex) */
        size_t j = e->i;
        while (isdigit((unsigned char)s[j]) || s[j] == '.') j++;
        char tmp[64];
        if (j - e->i >= sizeof tmp) e->bad = 1;
        snprintf(tmp, sizeof tmp, "%.*s", (int)(j - e->i), s + e->i);
        char *end;
        v = strtod(tmp, &end);
        if (*end) e->bad = 1;   /* "1.2.3" */
        e->i = j;
    } else if (c == '{') {
        v = braced(e, '{', '}');
    } else if (c == '(') {
        v = braced(e, '(', ')');
    } else if (peek_cmd(e, "\\frac")) {
        e->i += 5;
        double a = braced(e, '{', '}'), b = braced(e, '{', '}');
        v = a / b;
    } else if (peek_cmd(e, "\\sqrt")) {
        e->i += 5;
        double k = 2;
        if (s[e->i] == '[') k = braced(e, '[', ']');
        double a = braced(e, '{', '}');
        v = k == 2 ? sqrt(a) : (a < 0 && fmod(k, 2) == 1 ? -pow(-a, 1 / k) : pow(a, 1 / k));
    } else if (peek_cmd(e, "\\pi")) {
        e->i += 3;
        v = M_PI;
    } else {
        e->bad = 1;
    }
    e->depth--;
    return v;
}

static double power(ev *e) {
    double b = atom(e);
    if (!e->bad && e->s[e->i] == '^') {
        e->i++;
        double x;
        if (e->s[e->i] == '{') x = braced(e, '{', '}');
        else if (isdigit((unsigned char)e->s[e->i])) x = e->s[e->i++] - '0';   /* 2^3: one digit, as LaTeX reads it */
        else x = atom(e);
        b = pow(b, x);
    }
    return b;
}

static double factor(ev *e) {
    if (e->s[e->i] == '-') {
        e->i++;
        return -factor(e);
    }
    if (e->s[e->i] == '+') {
        e->i++;
        return factor(e);
    }
    return power(e);
}

static int starts_atom(ev *e) {
    char c = e->s[e->i];
    return isdigit((unsigned char)c) || c == '(' || c == '{' || peek_cmd(e, "\\frac") || peek_cmd(e, "\\sqrt") ||
           peek_cmd(e, "\\pi");
}

static double term(ev *e) {
    double v = factor(e);
    while (!e->bad) {
        if (e->s[e->i] == '*') {
            e->i++;
            v *= factor(e);
        } else if (peek_cmd(e, "\\cdot")) {
            e->i += 5;
            v *= factor(e);
        } else if (peek_cmd(e, "\\times")) {
            e->i += 6;
            v *= factor(e);
        } else if (e->s[e->i] == '/') {
            e->i++;
            v /= factor(e);
        } else if (starts_atom(e)) {
            v *= power(e);   /* implicit product: 2\sqrt{2}, 3\pi, 2(3) */
        } else break;
    }
    return v;
}

static double expr(ev *e) {
    if (++e->depth > MAX_DEPTH) {
        e->bad = 1;
        return NAN;
    }
    double v = term(e);
    while (!e->bad && (e->s[e->i] == '+' || e->s[e->i] == '-')) {
        char op = e->s[e->i++];
        double w = term(e);
        v = op == '+' ? v + w : v - w;
    }
    e->depth--;
    return v;
}

int t2g_math_eval(const char *s, double *v) {
    if (!s || !*s || strlen(s) > 512) return 0;
    ev e = {s, 0, 0, 0};
    double x = expr(&e);
    if (e.bad || s[e.i] || !isfinite(x)) return 0;
    *v = x;
    return 1;
}

/* ---------------- equivalence ---------------- */

/* Split s on commas outside any bracket into at most `max` parts (pointers into the modified s). */
static int split_top(char *s, char **parts, int max) {
    int n = 0, depth = 0;
    parts[n++] = s;
    for (char *p = s; *p; p++) {
        if (*p == '(' || *p == '[' || *p == '{') depth++;
        else if (*p == ')' || *p == ']' || *p == '}') depth--;
        else if (*p == ',' && depth == 0) {
            if (n == max) return -1;
            *p = 0;
            parts[n++] = p + 1;
        }
    }
    return n;
}

/* If s is wrapped in one pair of brackets that encloses all of it, return the opening and closing chars
 * and strip them in place ("\{...\}" counts as a set: open '{'). */
static void outer_delims(char *s, char *open, char *close) {
    *open = *close = 0;
    size_t n = strlen(s);
    if (n >= 4 && !strncmp(s, "\\{", 2) && !strcmp(s + n - 2, "\\}")) {
        *open = '{';
        *close = '}';
        memmove(s, s + 2, n - 4);
        s[n - 4] = 0;
        return;
    }
    if (n < 2 || !strchr("([", s[0]) || !strchr(")]", s[n - 1])) return;
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        if (strchr("([{", s[i])) depth++;
        else if (strchr(")]}", s[i])) depth--;
        if (depth == 0 && i < n - 1) return;   /* "(1,2)+(3,4)": not one pair */
    }
    *open = s[0];
    *close = s[n - 1];
    memmove(s, s + 1, n - 2);
    s[n - 2] = 0;
}

static int equal_norm(const char *a, const char *b, int depth);

static int lists_equal(char *a, char *b, int depth) {
    char oa, ca, ob, cb;
    outer_delims(a, &oa, &ca);
    outer_delims(b, &ob, &cb);
    if (oa && ob && (oa != ob || ca != cb)) return 0;
    enum { MAXP = 64 };
    char *pa[MAXP], *pb[MAXP];
    int na = split_top(a, pa, MAXP), nb = split_top(b, pb, MAXP);
    if (na < 2 || na != nb) return 0;
    int unordered = (!oa && !ob) || oa == '{' || ob == '{';
    if (!unordered) {
        for (int i = 0; i < na; i++)
            if (!equal_norm(pa[i], pb[i], depth + 1)) return 0;
        return 1;
    }
    int used[MAXP] = {0};
    for (int i = 0; i < na; i++) {
        int hit = 0;
        for (int j = 0; j < nb && !hit; j++)
            if (!used[j] && equal_norm(pa[i], pb[j], depth + 1)) used[j] = hit = 1;
        if (!hit) return 0;
    }
    return 1;
}

static int equal_norm(const char *a, const char *b, int depth) {
    if (!strcmp(a, b)) return 1;
    if (depth > 4) return 0;
    double va, vb;
    int ea = t2g_math_eval(a, &va), eb = t2g_math_eval(b, &vb);
    if (ea && eb) return t2g_num_equal(va, vb);
    if (!strchr(a, ',') || !strchr(b, ',')) return 0;
    char *ca = strdup(a), *cbb = strdup(b);
    int r = ca && cbb && lists_equal(ca, cbb, depth);
    free(ca);
    free(cbb);
    return r;
}

int t2g_math_equal(const char *a, const char *b) {
    if (!a || !b) return 0;
    char *na = t2g_math_normalize(a), *nb = t2g_math_normalize(b);
    int r = na && nb && *na && equal_norm(na, nb, 0);
    free(na);
    free(nb);
    return r;
}
