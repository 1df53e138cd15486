/* `t2 model ...` subcommands. argv[0] is the subcommand name; each returns a process exit code. */
#ifndef T2_CMD_MODEL_H
#define T2_CMD_MODEL_H

int t2_cmd_model_info(int argc, char **argv);
int t2_cmd_model_logits(int argc, char **argv);
int t2_cmd_model_generate(int argc, char **argv);

#endif
