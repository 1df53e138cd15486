/* `t2 model init` (a model from scratch) and `t2 model sft` (next-token training of every weight).
 * argv[0] is the subcommand name; each returns a process exit code. */
#ifndef T2_CMD_SFT_H
#define T2_CMD_SFT_H

int t2_cmd_model_init(int argc, char **argv);
int t2_cmd_model_sft(int argc, char **argv);

#endif
