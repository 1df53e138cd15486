/* `t2 model svd` and `t2 model expert ...` subcommands. argv[0] is the subcommand name. */
#ifndef T2_CMD_SVF_H
#define T2_CMD_SVF_H

int t2_cmd_model_svd(int argc, char **argv);
int t2_cmd_expert_show(int argc, char **argv);
int t2_cmd_expert_mix(int argc, char **argv);
int t2_cmd_expert_new(int argc, char **argv);
/* `t2 model expert show|mix|new`: argv[0] is "expert", argv[1] the subcommand. */
int t2_cmd_model_expert(int argc, char **argv);

#endif
