/* tasks.h — benchmark datasets as t2_task lists (the dataset loaders behind api->dataset_open and `t2 grade`).
 *
 * A dataset spec is either one of the known names below, resolved under a data directory laid out as
 * ../shared/data is (see its SOURCES.md), or a path to a JSONL file in the generic format.
 *
 * Known names, their files (under the data dir), splits and ids:
 *
 *   name            files                                  splits (train / validation / test)          id
 *   gsm8k           gsm8k/train.jsonl, gsm8k/test.jsonl    train.jsonl even lines / odd lines / test   "N" (test line), "train/N"
 *   math            math/test.jsonl (Hendrycks MATH)       - / - / all 5,000                           "N" (idx = line)
 *   math500         math500/test.jsonl (PRM800K subset)    - / - / all 500                             unique_id
 *   humaneval       humaneval/HumanEval.jsonl              - / - / all 164                             task_id
 *   humaneval-pro   humaneval/humaneval_pro.json           - / - / all 164                             id ("0")
 *   mbpp            mbpp/mbpp.jsonl (all 974)              task_id 1-10 + 601-974 / 511-600 / 11-510   task_id ("11")
 *   mbpp-sanitized  mbpp/sanitized-mbpp.json (427)         same task_id ranges as mbpp                 task_id
 *   mbpp-plus       mbpp/MbppPlus.jsonl (EvalPlus, 399)    first 300: i%3 != 2 / i%3 == 2 / the rest   task_id ("Mbpp/2")
 *   mbpp-pro        mbpp/mbpp_pro.json (378)               - / - / all 378                             id ("0")
 *   arc-easy        arc/ARC-Easy-{Dev,Test}.jsonl          Dev even lines / Dev odd lines / Test       id
 *   arc-challenge   arc/ARC-Challenge-{Dev,Test}.jsonl     Dev even lines / Dev odd lines / Test       id
 *
 * Why these splits: the Transformer² reference trains GSM8K on the even rows of GSM8K train and validates on
 * the odd ones, and tests on test.jsonl; MATH and HumanEval are only evaluated (no training split), so only
 * "test" exists; MBPP uses the google-research task_id ranges (11-510 test, 511-600 validation, 601-974
 * training; 1-10 were the few-shot prompt examples and count as training here); MBPP+ follows the
 * reference's 300 / rest cut (the reference shuffles the first 300 with Python's random.seed(16) to pick
 * 200 train + 100 validation; we take a deterministic interleave instead); ARC train files are not in the
 * data dir, so the reference's even/odd rule is applied to Dev.
 * split NULL or "all" gives every task of every split; a split a dataset lacks is T2_ERR_NOT_FOUND.
 *
 * Prompts are built as the reference builds them (system prompt in task->system, user prompt in
 * task->prompt):
 *   gsm8k  system asks for step-by-step reasoning ending in "#### N"; prompt = the question.
 *   math*  system "Solve the question below by reasoning step by step, and put the final answer within
 *          \boxed{}."; prompt = the problem. answer = the last \boxed{} of the solution (math), or the answer
 *          field (math500).
 *   arc-*  system asks to finish with "the answer is (X)"; prompt = question + "\nOptions:\nA. ...\nB. ...\n".
 *          Choices are lettered A, B, C... by position (rows labelled 1-4 are relettered), answer = the letter.
 *   code   system: the reference's coding-assistant message. humaneval: "Write a solution to the following
 *          problem:\n```python\n<prompt>\n```"; mbpp*: "<text> Your code should satisfy the following
 *          assertion:\n```python\n<first test>\n```"; *-pro: the CodeEval-Pro two-problem template.
 *          tests = the full test code run after the completion (HumanEval: test + "check(<entry_point>)";
 *          MBPP: setup code or imports + test_list; MBPP+: "import math", the assertion field, then every
 *          base input run through the completion and the canonical solution with the outputs compared, as
 *          the reference scores it (base pass@1; the plus inputs are not run); Pro: test_code).
 *
 * task->extra is a JSON object text. Keys the loaders set and the graders read:
 *   "answer_format": "number" (GSM8K: "#### N" or the last number) or "boxed" (MATH: last \boxed{});
 *   "labels": ["A", "B", ...], "choices": [...texts], "original_labels" (ARC);
 *   "code_prefix": code that precedes a completion that continues it (HumanEval prompt, Pro first problem);
 *   "response_prefix": what the reference pre-fills as the start of the assistant's answer;
 *   "level", "type"/"subject" (MATH), "source" (file name).
 *
 * Generic JSONL format (one object per line; blank lines skipped):
 *   {"id": "t1", "prompt": "...", "answer": "42", "grader": "math", "label": "math"}
 *   required: "prompt" (or "question", used as the prompt when "prompt" is absent), and "answer" or "tests".
 *   optional strings: id (default: the 0-based line number), system, question, solution, tests, entry_point,
 *   grader (default "code" when tests are given, else "exact"), label (default ""), family (default "generic"),
 *   split ("train", "validation" or "test": with a split requested, lines whose split differs are skipped;
 *   lines without one belong to every split), and "extra" (an object, merged with the keys the loader sets).
 *   answer may also be a JSON number. Any other key is kept in extra. Ids must be unique.
 * Malformed input is T2_ERR_FORMAT with the file, the line and the field named (see t2_last_error). */
#ifndef T2_TASKS_H
#define T2_TASKS_H

#include <stddef.h>

#include <t2/plugin.h>
#include <t2/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Open a dataset: spec is a known name (above) or a path to a generic JSONL file; split is "train",
 * "validation", "test", "all" or NULL (all); data_dir is where the known names are found (NULL: the
 * T2_DATA_DIR environment variable; a known name with neither is T2_ERR_INVALID_ARG). On failure *out is
 * NULL and t2_last_error() names the file, line and field. *out: caller frees with t2_dataset_close. */
t2_status t2_dataset_open(const char *spec, const char *split, const char *data_dir, t2_dataset **out);

/* Number of tasks. 0 for NULL. */
size_t t2_dataset_size(const t2_dataset *d);

/* Task i, or NULL when i is out of range. Borrowed: valid until t2_dataset_close. */
const t2_task *t2_dataset_task(const t2_dataset *d, size_t i);

/* The task whose id is `id`, or NULL (O(log n)). Borrowed: valid until t2_dataset_close. */
const t2_task *t2_dataset_find(const t2_dataset *d, const char *id);

/* The spec's canonical name ("gsm8k", or the path for a generic file). Borrowed: valid until close. */
const char *t2_dataset_name(const t2_dataset *d);

/* Releases the dataset and every task string. NULL-safe. */
void t2_dataset_close(t2_dataset *d);

/* The known dataset names, NULL-terminated. Borrowed, static. */
const char *const *t2_dataset_known_names(void);

#ifdef __cplusplus
}
#endif
#endif
