/* t2 grade — grade model outputs against a dataset with a grader plugin, in-process (no daemon).
 *
 *   t2 grade [--grader NAME] --task SPEC [--split S] --outputs OUTPUTS.jsonl [--json] [--plugin-dir DIR]
 *            [--data-dir DIR] [--workers N] [--settings JSON]
 *
 * SPEC is a dataset name or a generic JSONL path (as t2_dataset_open takes it). OUTPUTS.jsonl has one
 * object per line, {"id": ..., "output": "..."}, id being the task's id (a string, or an integer for
 * line-numbered datasets). An id that is not in the dataset (or a repeated one) is an error naming it: a
 * typo in an id must not quietly lower the accuracy. Only the tasks named in OUTPUTS are graded; n is
 * their count. Without --grader each task's own grader is used. --settings is the grader's init JSON.
 * The plugin directory is --plugin-dir, else $T2_PLUGIN_DIR, else the build tree's plugins/ (when it
 * exists), else the installed one. Exit codes: 0 graded (whatever the accuracy), 1 error, 2 usage. */
#ifndef T2_CMD_GRADE_H
#define T2_CMD_GRADE_H

#include <t2/plugin.h>

#include "loader.h"

int t2_cmd_grade(int argc, char **argv);

/* ---- the in-process host API of `t2 grade` (grade_host.c) ----
 * It provides what graders use: log, free, the random stream, cancelled, the datasets and grade (through
 * the registry set below); every model, expert, key-value, training and job function returns
 * T2_ERR_UNSUPPORTED (or NULL / 0 / nothing). Thread-safe. */

/* The table. Borrowed, static. */
const t2_host_api *t2_grade_host_api(void);

/* Where dataset_open finds known names (NULL: $T2_DATA_DIR), the registry grade() looks graders up in
 * (borrowed; NULL: none), and the least level that is logged. */
void t2_grade_host_configure(const char *data_dir, const t2_plugins *plugins, t2_log_level min_level);

/* Route log lines to fn instead of stderr (NULL: back to stderr). */
void t2_grade_host_set_log_sink(void (*fn)(void *u, t2_log_level level, const char *msg), void *u);

#endif
