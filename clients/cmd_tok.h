/* `t2 model tokenize | detokenize | chat` — command-line handlers for the tokenizer and chat templates.
 *
 * Each takes the subcommand's own argv (argv[0] is the subcommand name, options follow) and returns a
 * process exit code: 0 success, 1 error (a message naming the problem is on stderr), 2 usage. */
#ifndef T2_CMD_TOK_H
#define T2_CMD_TOK_H

/* tokenize --model DIR [--no-special]
 * Reads UTF-8 text on stdin (all of it, byte for byte, including any final newline) and prints the
 * ids separated by single spaces on one line. --no-special leaves out the post-processor's special
 * tokens (e.g. Llama 2's BOS); special-token strings inside the text are always single ids. */
int t2_cmd_model_tokenize(int argc, char **argv);

/* detokenize --model DIR [--skip-special] [--no-cleanup]
 * Reads ids (separated by any whitespace) on stdin and prints the decoded text exactly, with no
 * newline added. */
int t2_cmd_model_detokenize(int argc, char **argv);

/* chat --model DIR [--template NAME|FILE] [--system TEXT] --user TEXT [--assistant TEXT --user TEXT ...]
 *      [--no-generation-prompt] [--ids]
 * Prints the templated prompt (or, with --ids, its ids on one line). Messages are taken in the order
 * given. The template defaults to "auto" (recognised from tokenizer_config.json); see t2/chat.h for
 * the names and the custom template file format. The end-of-turn stop string goes to stderr. */
int t2_cmd_model_chat(int argc, char **argv);

#endif
