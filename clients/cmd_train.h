/* `t2 model logprob-grad`. argv[0] is the subcommand name; returns a process exit code. */
#ifndef T2_CMD_TRAIN_H
#define T2_CMD_TRAIN_H

int t2_cmd_model_logprob_grad(int argc, char **argv);

#endif
