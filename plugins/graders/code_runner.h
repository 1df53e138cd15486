/* code_runner.h — the Python program that runs a completion and its tests inside the sandbox. */
#ifndef T2G_CODE_RUNNER_H
#define T2G_CODE_RUNNER_H

extern const char t2g_code_runner_py[];

#endif
