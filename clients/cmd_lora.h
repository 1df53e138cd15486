/* `t2 model lora ...` (local LoRA files). argv[0] is "lora", argv[1] the subcommand. */
#ifndef T2_CMD_LORA_H
#define T2_CMD_LORA_H

int t2_cmd_model_lora(int argc, char **argv);

#endif
