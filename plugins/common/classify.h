/* classify.h — the first pass's classification prompt, shared by the prompt and classifier dispatch
 * plugins (which ask it) and the cls trainer (which trains an expert to answer it), so that the
 * classification expert is trained on exactly the prompt it will be asked.
 *
 * The instruction goes in the system prompt (the same for every query, so the daemon computes its KV
 * cache once); the user turn is the question itself. The answer names a label in \boxed{}. */
#ifndef T2_PLUGIN_CLASSIFY_H
#define T2_PLUGIN_CLASSIFY_H

#include <stddef.h>

#define T2_CLASSIFY_MAX_LABELS 32
#define T2_CLASSIFY_OTHER "others"
/* The label of the classification expert (trained by the cls trainer, used by the classifier dispatch). */
#define T2_CLASSIFY_EXPERT_LABEL "classifier"

/* The system prompt for these labels (they are listed in the given order, then "others").
 * Caller frees with free(); NULL when out of memory. */
char *t2_classify_system(const char *const *labels, int n);

/* The label an answer names: the content of its last \boxed{...} (or, failing that, the word after
 * "Classification:"), matched case-insensitively against labels. Returns its index, or -1 for
 * "others", an unknown word or no answer at all (then the base model answers). */
int t2_classify_parse(const char *answer, const char *const *labels, int n);

/* Distinct labels of a host experts_json array text, in first-seen order, skipping empty labels, LoRA
 * experts (baselines: the two passes choose among SVF experts) and the label `skip` (e.g. the classifier's). Writes up to max pointers into labels (strings
 * copied into pool, which must hold at least strlen(json) + 1 bytes); returns the count. */
int t2_classify_labels(const char *experts_json, const char *skip, char *pool, const char **labels, int max);

#endif
