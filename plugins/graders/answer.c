/* Answer extraction from model text: \boxed{} contents and GSM8K numbers (see answer.h). */
#include "answer.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- \boxed{} ---------------- */

/* The contents of the box whose keyword ends at p (just after "\boxed" / "\fbox"), or NULL if incomplete. */
static char *box_at(const char *p) {
    while (*p == ' ') p++;
    if (*p == '{') {
        int depth = 0;
        for (const char *q = p; *q; q++) {
            if (*q == '{') depth++;
            else if (*q == '}' && --depth == 0) return strndup(p + 1, (size_t)(q - p - 1));
        }
        return NULL;
    }
    /* "\boxed 5$": the reference reads up to the next '$' */
    const char *e = p;
    while (*e && *e != '$' && *e != ' ' && *e != '\n') e++;
    return e > p ? strndup(p, (size_t)(e - p)) : NULL;
}

char *t2g_last_boxed(const char *s) {
    if (!s) return NULL;
    static const char *const keys[] = {"\\boxed", "\\fbox"};
    /* walk the occurrences from the last one backwards */
    size_t n = strlen(s);
    for (size_t i = n; i-- > 0;) {
        if (s[i] != '\\') continue;
        for (int k = 0; k < 2; k++) {
            size_t kl = strlen(keys[k]);
            if (strncmp(s + i, keys[k], kl)) continue;
            char c = s[i + kl];
            if (isalpha((unsigned char)c)) continue;   /* \boxedfoo is another macro */
            char *b = box_at(s + i + kl);
            if (b) return b;
        }
    }
    return NULL;
}

/* ---------------- numbers ---------------- */

/* A number starting at s[i] (the caller checked a digit, '.', '-' or U+2212 is there). Writes its plain form
 * to out and returns the index just after it, or i when there is no number at i. */
static size_t scan_number(const char *s, size_t i, char *out, size_t cap) {
    size_t j = i, k = 0;
    char buf[128];
    if (s[j] == '-' || !strncmp(s + j, "\xe2\x88\x92", 3)) {
        /* a sign only where it cannot be a binary minus */
        if (i > 0 && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == ')')) return i;
        j += s[j] == '-' ? 1 : 3;
        buf[k++] = '-';
        if (s[j] == '$') j++;
    }
    if (!isdigit((unsigned char)s[j]) && !(s[j] == '.' && isdigit((unsigned char)s[j + 1]))) return i;
    if (isdigit((unsigned char)s[j]) || s[j] == '.') {
        if (s[j] == '.') buf[k++] = '0';
        while (isdigit((unsigned char)s[j]) && k < sizeof buf - 2) {
            buf[k++] = s[j++];
            /* thousands separators: a comma followed by exactly three digits */
            if (s[j] == ',' && isdigit((unsigned char)s[j + 1]) && isdigit((unsigned char)s[j + 2]) &&
                isdigit((unsigned char)s[j + 3]) && !isdigit((unsigned char)s[j + 4]))
                j++;
        }
        if (s[j] == '.' && isdigit((unsigned char)s[j + 1])) {
            buf[k++] = s[j++];
            while (isdigit((unsigned char)s[j]) && k < sizeof buf - 1) buf[k++] = s[j++];
        }
    }
    buf[k] = 0;
    /* trailing zeros of a decimal say nothing: "18.00" -> "18" */
    char *dot = strchr(buf, '.');
    if (dot) {
        char *e = buf + k;
        while (e > dot + 1 && e[-1] == '0') *--e = 0;
        if (e == dot + 1) *dot = 0;
    }
    if (!strcmp(buf, "-0")) strcpy(buf, "0");
    snprintf(out, cap, "%s", buf);
    return j;
}

static int num_start(const char *s, size_t i) {
    return isdigit((unsigned char)s[i]) || (s[i] == '.' && isdigit((unsigned char)s[i + 1])) || s[i] == '-' ||
           !strncmp(s + i, "\xe2\x88\x92", 3);
}

/* The first (last = 0) or last (last = 1) number in s[0..n). */
static int number_in(const char *s, size_t n, int last, char *out, size_t cap) {
    int found = 0;
    char tmp[128];
    for (size_t i = 0; i < n && s[i];) {
        if (num_start(s, i)) {
            /* a digit right after a letter or digit belongs to a word ("x2", "3rd" is still 3) */
            size_t j = scan_number(s, i, tmp, sizeof tmp);
            if (j > i) {
                if (!(i > 0 && isalpha((unsigned char)s[i - 1]) && isdigit((unsigned char)s[i]))) {
                    snprintf(out, cap, "%s", tmp);
                    found = 1;
                    if (!last) return 1;
                }
                i = j;
                continue;
            }
        }
        i++;
    }
    return found;
}

static const char *last_occurrence_ci(const char *s, const char *needle) {
    const char *r = NULL;
    for (const char *p = s; (p = strcasestr(p, needle)); p++) r = p;
    return r;
}

t2g_num_how t2g_find_number(const char *s, char *out, size_t cap) {
    if (!s || !cap) return T2G_NUM_NONE;
    out[0] = 0;
    const char *h = NULL;
    for (const char *p = s; (p = strstr(p, "####")); p += 4) h = p;
    if (h) {
        const char *a = h;
        while (*a == '#') a++;
        const char *eol = strchr(a, '\n');
        if (number_in(a, eol ? (size_t)(eol - a) : strlen(a), 0, out, cap)) return T2G_NUM_HASHES;
    }
    char *b = t2g_last_boxed(s);
    if (b) {
        int ok = number_in(b, strlen(b), 0, out, cap);
        free(b);
        if (ok) return T2G_NUM_BOXED;
    }
    const char *ai = last_occurrence_ci(s, "answer is");
    if (ai) {
        const char *a = ai + 9;
        const char *eol = strchr(a, '\n');
        if (number_in(a, eol ? (size_t)(eol - a) : strlen(a), 0, out, cap)) return T2G_NUM_ANSWER_IS;
    }
    if (number_in(s, strlen(s), 1, out, cap)) return T2G_NUM_LAST;
    return T2G_NUM_NONE;
}

int t2g_parse_number(const char *s, double *v) {
    if (!s) return 0;
    while (isspace((unsigned char)*s) || *s == '$') s++;
    if (!num_start(s, 0)) return 0;
    char tmp[128];
    size_t j = scan_number(s, 0, tmp, sizeof tmp);
    if (j == 0) return 0;
    while (s[j] && (isspace((unsigned char)s[j]) || s[j] == '%' || s[j] == '.')) j++;
    if (s[j]) return 0;
    char *end;
    double x = strtod(tmp, &end);
    if (*end || !isfinite(x)) return 0;
    *v = x;
    return 1;
}

int t2g_num_equal(double a, double b) {
    if (!isfinite(a) || !isfinite(b)) return a == b;
    /* integers compare exactly (1600001 is not 1600000); otherwise 1e-9 relative, for values computed
     * through different forms (2\sqrt{2} and \sqrt{8}), tight enough that 0.33 is not 1/3 */
    if (a == floor(a) && b == floor(b) && fabs(a) < 9e15 && fabs(b) < 9e15) return a == b;
    double d = fabs(a - b), m = fmax(1.0, fmax(fabs(a), fabs(b)));
    return d <= 1e-9 * m;
}
