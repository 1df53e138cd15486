/* Shared helpers of the grader and dataset Check suites: the data and plugin directories, a plugin
 * registry on the `t2 grade` host (clients/grade_host.c), grading one output or many in parallel, and a
 * log capture for the plugins' warnings. */
#ifndef T2_GTEST_H
#define T2_GTEST_H

#include "cmd_grade.h"
#include "loader.h"
#include "tasks.h"

#include <check.h>
#include <stddef.h>

/* The benchmark data (../shared/data); exits 77 (skipped) with a message when it is missing. */
const char *gt_data_dir(void);
void gt_require_data(void);

/* The build directory holding grader_*.so. */
const char *gt_plugin_dir(void);

/* A registry with every grader of gt_plugin_dir(), the code grader initialised with code_settings (NULL:
 * "{}"). Aborts the test on failure. Caller frees with t2_plugins_free. */
t2_plugins *gt_registry(const char *code_settings);

/* A dataset; aborts the test on failure. Caller frees with t2_dataset_close. */
t2_dataset *gt_open(const char *spec, const char *split);

/* Grade with the named grader of reg; aborts the test when the grader is missing or returns an error. */
t2_verdict gt_grade(const t2_plugins *reg, const char *grader, const t2_task *t, const char *output);

/* Grade n outputs with `workers` threads; st[i] receives each call's status (may be NULL). */
void gt_grade_all(const t2_plugins *reg, const char *grader, const t2_task *const *tasks, const char *const *outputs,
                  size_t n, int workers, t2_verdict *v, t2_status *st);

/* Everything the plugins logged since the last gt_log_clear (through the grade host). Borrowed. */
const char *gt_log(void);
void gt_log_clear(void);

#endif
