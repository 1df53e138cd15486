/* The classification prompt and its answer parsing (see classify.h). Our own wording of the paper's
 * first-pass question: name the kind of expert a question needs, as Classification: \boxed{kind}. */
#include "classify.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *t2_classify_system(const char *const *labels, int n) {
    size_t cap = 1024;
    for (int i = 0; i < n; i++) cap += strlen(labels[i]) + 4;
    char *s = malloc(cap);
    if (!s) return NULL;
    size_t o = (size_t)snprintf(s, cap,
                                "You route questions to specialists. Read the question the user gives you and decide which "
                                "kind of specialist should answer it. The kinds are: ");
    for (int i = 0; i < n && o < cap; i++) o += (size_t)snprintf(s + o, cap - o, "%s, ", labels[i]);
    if (o < cap)
        snprintf(s + o, cap - o,
                 "or %s if none of them fits. Do not answer the question itself. Reply with one line: "
                 "Classification: \\boxed{kind}",
                 T2_CLASSIFY_OTHER);
    return s;
}

static int match(const char *word, size_t len, const char *const *labels, int n) {
    while (len && isspace((unsigned char)*word)) word++, len--;
    while (len && (isspace((unsigned char)word[len - 1]) || word[len - 1] == '.')) len--;
    for (int i = 0; i < n; i++)
        if (strlen(labels[i]) == len && !strncasecmp(word, labels[i], len)) return i;
    return -1;
}

int t2_classify_parse(const char *answer, const char *const *labels, int n) {
    if (!answer) return -1;
    const char *last = NULL;
    for (const char *p = strstr(answer, "\\boxed{"); p; p = strstr(p + 1, "\\boxed{")) last = p;
    if (last) {
        const char *b = last + 7, *e = strchr(b, '}');
        return match(b, e ? (size_t)(e - b) : strcspn(b, "\n"), labels, n);
    }
    const char *c = strstr(answer, "Classification:");
    if (c) {
        c += strlen("Classification:");
        return match(c, strcspn(c, "\n"), labels, n);
    }
    return -1;
}

int t2_classify_labels(const char *experts_json, const char *skip, char *pool, const char **labels, int max) {
    json_t *a = json_loads(experts_json ? experts_json : "[]", 0, NULL);
    int n = 0;
    size_t o = 0, i;
    json_t *v;
    if (json_is_array(a)) json_array_foreach(a, i, v) {
            const char *l = json_string_value(json_object_get(v, "label"));
            const char *kind = json_string_value(json_object_get(v, "kind"));
            if (!l || !*l || (skip && !strcmp(l, skip)) || (kind && !strcmp(kind, "lora")) || n >= max) continue;
            int seen = 0;
            for (int k = 0; k < n; k++) seen |= !strcmp(labels[k], l);
            if (seen) continue;
            size_t len = strlen(l);
            memcpy(pool + o, l, len + 1);
            labels[n++] = pool + o;
            o += len + 1;
        }
    json_decref(a);
    return n;
}
