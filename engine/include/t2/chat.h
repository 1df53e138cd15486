/* t2/chat.h — chat templates: turning a conversation into the prompt text a chat model was trained on.
 *
 * Models ship a Jinja template in tokenizer_config.json. We do not run Jinja; we recognise the
 * template family by its markers and render that family's format in C:
 *
 *   T2_CHAT_LLAMA3   "<|start_header_id|>" — BOS, then per message
 *                    <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|> (content trimmed);
 *                    generation prompt <|start_header_id|>assistant<|end_header_id|>\n\n; stop <|eot_id|>
 *   T2_CHAT_CHATML   "<|im_start|>" (Qwen, many others) — per message <|im_start|>ROLE\nCONTENT<|im_end|>\n;
 *                    generation prompt <|im_start|>assistant\n; stop <|im_end|>
 *   T2_CHAT_LLAMA2   "<<SYS>>" — Meta's Llama 2 chat: BOS[INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ASSISTANT EOS;
 *                    user/assistant turns alternate; contents stripped; stop EOS
 *   T2_CHAT_MISTRAL  "[INST]" without <<SYS>> — BOS[INST] USER [/INST]ASSISTANT EOS...; a system message is
 *                    prepended to the first user message followed by a blank line; stop EOS
 *   T2_CHAT_PLAIN    fallback for models without a template: BOS, system content + "\n\n",
 *                    "User: CONTENT\n\n", "Assistant: CONTENT\n\n"; generation prompt "Assistant:"; stop EOS
 *   T2_CHAT_CUSTOM   a user-supplied template in the format below
 *
 * For the [INST] families the prompt ends with "[/INST]" already, so add_generation_prompt adds nothing.
 * Qwen3's "thinking" blocks are not synthesised: assistant messages are rendered as given.
 *
 * CUSTOM TEMPLATE FORMAT (text, UTF-8, one `key = value` per line):
 *
 *     # ChatML written out by hand
 *     begin      = {bos}
 *     system     = <|im_start|>system\n{content}<|im_end|>\n
 *     user       = <|im_start|>user\n{content}<|im_end|>\n
 *     assistant  = <|im_start|>assistant\n{content}<|im_end|>\n
 *     message    = <|im_start|>{role}\n{content}<|im_end|>\n
 *     generation = <|im_start|>assistant\n
 *     stop       = <|im_end|>
 *     trim       = no
 *
 *   - Lines that are empty or start with '#' are ignored. Spaces around the key and around the value
 *     are ignored; write \s for a significant leading/trailing space.
 *   - Escapes in values: \n newline, \t tab, \r carriage return, \s space, \\ backslash.
 *   - Placeholders: {content} the message text, {role} its role, {bos} and {eos} the tokenizer's BOS/EOS
 *     strings (empty if it has none); {{ and }} stand for literal braces. Any other {name} is an error.
 *   - Keys: `begin` is emitted once before the first message; `generation` after the last message when
 *     a generation prompt is requested; `stop` names the end-of-turn string (default: the EOS token);
 *     `trim = yes` strips whitespace around each message's content; `message` is the fallback for roles
 *     without their own key; every other key is a role name ("system", "user", "assistant", "tool", ...).
 *   - Rendering a message whose role has no key and no `message` fallback is T2_ERR_INVALID_ARG.
 *
 * The rendered prompt contains special tokens as text ("<|eot_id|>"); t2_tokenizer_encode() recognises
 * them, so encode it with add_special = 0 (the template already placed BOS), as t2_chat_encode() does. */
#ifndef T2_CHAT_H
#define T2_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include <t2/status.h>
#include <t2/tokenizer.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum t2_chat_kind {
    T2_CHAT_AUTO = 0, /* only as a request: detect from the tokenizer's template */
    T2_CHAT_LLAMA3,
    T2_CHAT_CHATML,
    T2_CHAT_LLAMA2,
    T2_CHAT_MISTRAL,
    T2_CHAT_PLAIN,
    T2_CHAT_CUSTOM,
} t2_chat_kind;

/* One message of a conversation. Both strings are UTF-8, NUL-terminated, borrowed by the call. */
typedef struct t2_chat_message {
    const char *role;    /* "system", "user", "assistant", ... */
    const char *content;
} t2_chat_message;

typedef struct t2_chat_template t2_chat_template;

/* The family a Jinja chat template belongs to, by its markers; T2_CHAT_PLAIN if NULL or unrecognised. */
t2_chat_kind t2_chat_detect(const char *jinja_template);

/* "llama3", "chatml", "llama2", "mistral", "plain", "custom", "auto". Borrowed, static. */
const char *t2_chat_kind_name(t2_chat_kind kind);

/* Parse a kind name (as t2_chat_kind_name writes it; "qwen" is accepted for chatml). Returns -1 if unknown. */
int t2_chat_kind_parse(const char *name);

/* A built-in template. `tok` supplies BOS/EOS strings and the stop id (it may be NULL: then they are
 * empty / -1); T2_CHAT_AUTO detects the kind from t2_tokenizer_chat_template(tok). The template keeps
 * copies of what it needs: `tok` may be freed first. Returns NULL with *err set for T2_CHAT_CUSTOM or
 * an out-of-range kind. Returns: caller frees with t2_chat_template_free. */
t2_chat_template *t2_chat_template_builtin(t2_chat_kind kind, const t2_tokenizer *tok, t2_status *err);

/* A custom template from text in the format documented above. Errors (T2_ERR_FORMAT) name the line.
 * Returns: caller frees with t2_chat_template_free. */
t2_chat_template *t2_chat_template_parse(const char *text, size_t len, const t2_tokenizer *tok, t2_status *err);

/* A template named on a command line or in configuration: a kind name ("auto", "llama3", ...) or the
 * path of a custom template file. Returns: caller frees with t2_chat_template_free. */
t2_chat_template *t2_chat_template_load(const char *spec, const t2_tokenizer *tok, t2_status *err);

/* Free a template. NULL-safe. */
void t2_chat_template_free(t2_chat_template *tmpl);

/* The kind of a template (never T2_CHAT_AUTO). */
t2_chat_kind t2_chat_template_kind(const t2_chat_template *tmpl);

/* Render messages into prompt text; `add_generation_prompt` appends the assistant header so the model
 * answers next. On success *out is a malloc'd NUL-terminated string of *len bytes (caller frees with
 * free()). Errors: T2_ERR_INVALID_ARG for a NULL message field or a role the template cannot place
 * (e.g. two user turns in a row for Llama 2 is allowed and rendered as two [INST] blocks). */
t2_status t2_chat_render(const t2_chat_template *tmpl, const t2_chat_message *msgs, size_t n,
                         int add_generation_prompt, char **out, size_t *len);

/* Render, then encode with `tok` (add_special = 0). *ids: caller frees with free(). */
t2_status t2_chat_encode(const t2_chat_template *tmpl, const t2_tokenizer *tok, const t2_chat_message *msgs,
                         size_t n, int add_generation_prompt, int32_t **ids, size_t *n_ids);

/* The end-of-turn string that stops generation ("<|eot_id|>", "<|im_end|>", or the EOS string).
 * Borrowed: valid until t2_chat_template_free. Never NULL (may be ""). */
const char *t2_chat_template_stop(const t2_chat_template *tmpl);

/* The id of the end-of-turn token in the tokenizer the template was made with, or -1. */
int32_t t2_chat_template_stop_id(const t2_chat_template *tmpl);

#ifdef __cplusplus
}
#endif
#endif
