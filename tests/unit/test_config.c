/* config.json parsing: the three supported families with Hugging Face's defaults, and every refusal
 * naming the field at fault. */
#include <t2/error.h>
#include <t2/model.h>

#include "util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *g_dir, *g_path;

static void setup(void) {
    g_dir = tu_mkdtemp();
    g_path = tu_join(g_dir, "config.json");
}
static void teardown(void) {
    tu_rm_rf(g_dir);
    free(g_dir);
    free(g_path);
}

static t2_status load(const char *json, t2_model_config *c) {
    tu_write_str(g_path, json);
    return t2_model_config_load(g_path, c);
}

/* A minimal llama body (without bos_token_id, and with it); extra fields are appended. */
#define BASE_NO_BOS                                                                                                 \
    "\"vocab_size\": 128256, \"hidden_size\": 4096, \"intermediate_size\": 14336, \"num_hidden_layers\": 32,"     \
    " \"num_attention_heads\": 32"
#define BASE_FIELDS BASE_NO_BOS ", \"bos_token_id\": 1"

START_TEST(test_llama3) {
    t2_model_config c;
    t2_status s = load("{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", " BASE_NO_BOS
                       ", \"num_key_value_heads\": 8, \"max_position_embeddings\": 131072, \"rms_norm_eps\": 1e-05,"
                       " \"rope_theta\": 500000.0, \"hidden_act\": \"silu\", \"tie_word_embeddings\": false,"
                       " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009],"
                       " \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
                       " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
                       " \"torch_dtype\": \"bfloat16\"}",
                       &c);
    ck_assert_msg(s == T2_OK, "load: %s", t2_last_error());
    ck_assert_str_eq(c.model_type, "llama");
    ck_assert_int_eq(c.arch, T2_ARCH_LLAMA);
    ck_assert_int_eq(c.vocab_size, 128256);
    ck_assert_int_eq(c.hidden_size, 4096);
    ck_assert_int_eq(c.intermediate_size, 14336);
    ck_assert_int_eq(c.n_layers, 32);
    ck_assert_int_eq(c.n_heads, 32);
    ck_assert_int_eq(c.n_kv_heads, 8);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_int_eq(c.max_position_embeddings, 131072);
    ck_assert_float_eq_tol(c.rms_norm_eps, 1e-5f, 1e-12f);
    ck_assert_double_eq(c.rope_theta, 500000.0);
    ck_assert_int_eq(c.rope_kind, T2_ROPE_LLAMA3);
    ck_assert_double_eq(c.rope_factor, 8.0);
    ck_assert_double_eq(c.rope_low_freq_factor, 1.0);
    ck_assert_double_eq(c.rope_high_freq_factor, 4.0);
    ck_assert_int_eq(c.rope_original_max_pos, 8192);
    ck_assert_int_eq(c.tie_word_embeddings, 0);
    ck_assert_int_eq(c.attention_bias, 0);
    ck_assert_int_eq(c.sliding_window, 0);
    ck_assert_int_eq(c.bos_token_id, 128000);
    ck_assert_int_eq(c.n_eos, 3);
    ck_assert_int_eq(c.eos_token_ids[0], 128001);
    ck_assert_int_eq(c.eos_token_ids[1], 128008);
    ck_assert_int_eq(c.eos_token_ids[2], 128009);
}
END_TEST

START_TEST(test_llama2_defaults) {
    t2_model_config c;
    t2_status s = load("{\"model_type\": \"llama\", \"vocab_size\": 32000, \"hidden_size\": 4096,"
                       " \"intermediate_size\": 11008, \"num_hidden_layers\": 32, \"num_attention_heads\": 32,"
                       " \"eos_token_id\": 2, \"bos_token_id\": 1, \"rope_scaling\": null}",
                       &c);
    ck_assert_msg(s == T2_OK, "load: %s", t2_last_error());
    ck_assert_int_eq(c.n_kv_heads, 32);          /* absent: = heads */
    ck_assert_int_eq(c.head_dim, 4096 / 32);     /* absent: hidden / heads */
    ck_assert_int_eq(c.rope_kind, T2_ROPE_DEFAULT);
    ck_assert_double_eq(c.rope_theta, 10000.0);
    ck_assert_int_eq(c.max_position_embeddings, 2048);
    ck_assert_float_eq_tol(c.rms_norm_eps, 1e-6f, 1e-13f);
    ck_assert_int_eq(c.tie_word_embeddings, 0);
    ck_assert_int_eq(c.n_eos, 1);
    ck_assert_int_eq(c.eos_token_ids[0], 2);
    ck_assert_int_eq(c.bos_token_id, 1);
}
END_TEST

START_TEST(test_no_eos_no_bos) {
    /* bos_token_id and eos_token_id are optional (Hugging Face defaults them to None) */
    t2_model_config c;
    t2_status s = load("{\"model_type\": \"llama\", " BASE_NO_BOS "}", &c);
    ck_assert_msg(s == T2_OK, "config without bos_token_id: %s", t2_last_error());
    ck_assert_int_eq(c.n_eos, 0);
    ck_assert_int_eq(c.bos_token_id, -1);
    s = load("{\"model_type\": \"llama\", " BASE_NO_BOS ", \"bos_token_id\": null, \"eos_token_id\": null}", &c);
    ck_assert_msg(s == T2_OK, "config with bos_token_id null: %s", t2_last_error());
    ck_assert_int_eq(c.bos_token_id, -1);
    ck_assert_int_eq(c.n_eos, 0);
}
END_TEST

START_TEST(test_explicit_head_dim) {
    t2_model_config c;
    ck_assert_int_eq(load("{\"model_type\": \"llama\", " BASE_FIELDS ", \"head_dim\": 64}", &c), T2_OK);
    ck_assert_int_eq(c.head_dim, 64);
}
END_TEST

START_TEST(test_rope_linear) {
    t2_model_config c;
    t2_status s = load("{\"model_type\": \"llama\", " BASE_FIELDS ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}", &c);
    ck_assert_msg(s == T2_OK, "load: %s", t2_last_error());
    ck_assert_int_eq(c.rope_kind, T2_ROPE_LINEAR);
    ck_assert_double_eq(c.rope_factor, 2.0);
}
END_TEST

START_TEST(test_mistral_window) {
    t2_model_config c;
    t2_status s = load("{\"model_type\": \"mistral\", " BASE_FIELDS ", \"num_key_value_heads\": 8, \"sliding_window\": 4096}", &c);
    ck_assert_msg(s == T2_OK, "load: %s", t2_last_error());
    ck_assert_int_eq(c.arch, T2_ARCH_MISTRAL);
    ck_assert_int_eq(c.sliding_window, 4096);
    s = load("{\"model_type\": \"mistral\", " BASE_FIELDS ", \"sliding_window\": 1000}", &c);
    ck_assert_int_eq(s, T2_OK);
    ck_assert_int_eq(c.sliding_window, 1000);
    s = load("{\"model_type\": \"mistral\", " BASE_FIELDS ", \"sliding_window\": null}", &c);
    ck_assert_msg(s == T2_OK, "load: %s", t2_last_error());
    ck_assert_int_eq(c.sliding_window, 0);
    s = load("{\"model_type\": \"mistral\", " BASE_FIELDS ", \"sliding_window\": -5}", &c);
    ck_assert_int_eq(s, T2_ERR_FORMAT);
    TU_ASSERT_ERR_HAS("sliding_window");
    /* llama ignores a sliding_window field */
    s = load("{\"model_type\": \"llama\", " BASE_FIELDS ", \"sliding_window\": 1000}", &c);
    ck_assert_int_eq(s, T2_OK);
    ck_assert_int_eq(c.sliding_window, 0);
}
END_TEST

START_TEST(test_qwen2) {
    t2_model_config c;
    t2_status s = load("{\"model_type\": \"qwen2\", \"vocab_size\": 151936, \"hidden_size\": 896, \"intermediate_size\": 4864,"
                       " \"num_hidden_layers\": 24, \"num_attention_heads\": 14, \"num_key_value_heads\": 2,"
                       " \"attention_bias\": false, \"tie_word_embeddings\": true, \"rope_theta\": 1000000.0,"
                       " \"use_sliding_window\": false, \"sliding_window\": 32768, \"eos_token_id\": 151645,"
                       " \"bos_token_id\": 151643, \"hidden_act\": \"silu\"}",
                       &c);
    ck_assert_msg(s == T2_OK, "load: %s", t2_last_error());
    ck_assert_int_eq(c.arch, T2_ARCH_QWEN2);
    ck_assert_int_eq(c.attention_bias, 1);   /* forced: qwen2 always has q/k/v biases */
    ck_assert_int_eq(c.tie_word_embeddings, 1);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_int_eq(c.n_kv_heads, 2);
    ck_assert_int_eq(c.sliding_window, 0);
    ck_assert_int_eq(c.n_eos, 1);
    ck_assert_int_eq(c.eos_token_ids[0], 151645);

    s = load("{\"model_type\": \"qwen2\", " BASE_FIELDS ", \"use_sliding_window\": true}", &c);
    ck_assert_int_eq(s, T2_ERR_UNSUPPORTED);
    TU_ASSERT_ERR_HAS("use_sliding_window");
}
END_TEST

/* ---- refusals ---- */

typedef struct bad_cfg {
    const char *what;
    const char *json;       /* NULL: no file at all */
    t2_status want;
    const char *needle;
} bad_cfg;

static const bad_cfg s_bad[] = {
    {"missing file", NULL, T2_ERR_IO, "config.json"},
    {"invalid JSON", "{\"model_type\": \"llama\",", T2_ERR_FORMAT, "config.json"},
    {"empty file", "", T2_ERR_FORMAT, "config.json"},
    {"not an object", "[1, 2]", T2_ERR_FORMAT, "config.json"},
    {"missing model_type", "{" BASE_FIELDS "}", T2_ERR_NOT_FOUND, "model_type"},
    {"bos outside vocabulary", "{\"model_type\": \"llama\", " BASE_NO_BOS ", \"bos_token_id\": 128256}", T2_ERR_FORMAT,
     "bos_token_id"},
    {"model_type not a string", "{\"model_type\": 3, " BASE_FIELDS "}", T2_ERR_NOT_FOUND, "model_type"},
    {"unknown model_type gpt2", "{\"model_type\": \"gpt2\", " BASE_FIELDS "}", T2_ERR_UNSUPPORTED, "gpt2"},
    {"missing hidden_size",
     "{\"model_type\": \"llama\", \"vocab_size\": 100, \"intermediate_size\": 64, \"num_hidden_layers\": 2,"
     " \"num_attention_heads\": 4}",
     T2_ERR_NOT_FOUND, "hidden_size"},
    {"hidden_size a string",
     "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": \"4096\", \"intermediate_size\": 64,"
     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4}",
     T2_ERR_FORMAT, "hidden_size"},
    {"heads not a multiple of kv heads", "{\"model_type\": \"llama\", " BASE_FIELDS ", \"num_key_value_heads\": 5}",
     T2_ERR_FORMAT, "num_key_value_heads"},
    {"zero kv heads", "{\"model_type\": \"llama\", " BASE_FIELDS ", \"num_key_value_heads\": 0}", T2_ERR_FORMAT,
     "num_key_value_heads"},
    {"rope_scaling yarn", "{\"model_type\": \"llama\", " BASE_FIELDS ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}",
     T2_ERR_UNSUPPORTED, "yarn"},
    {"rope_scaling llama3 without factor",
     "{\"model_type\": \"llama\", " BASE_FIELDS ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"low_freq_factor\": 1.0,"
     " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}}",
     T2_ERR_NOT_FOUND, "factor"},
    {"rope_scaling without type", "{\"model_type\": \"llama\", " BASE_FIELDS ", \"rope_scaling\": {\"factor\": 4.0}}",
     T2_ERR_FORMAT, "rope_scaling"},
    {"hidden_act gelu", "{\"model_type\": \"llama\", " BASE_FIELDS ", \"hidden_act\": \"gelu\"}", T2_ERR_UNSUPPORTED,
     "hidden_act"},
    {"negative vocab_size",
     "{\"model_type\": \"llama\", \"vocab_size\": -5, \"hidden_size\": 64, \"intermediate_size\": 64,"
     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4}",
     T2_ERR_FORMAT, "vocab_size"},
    {"odd head_dim", "{\"model_type\": \"llama\", " BASE_FIELDS ", \"head_dim\": 7}", T2_ERR_FORMAT, "head_dim"},
    {"eos outside vocabulary",
     "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 64,"
     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"bos_token_id\": 1, \"eos_token_id\": 100}",
     T2_ERR_FORMAT, "eos_token_id"},
    {"eos list with a string", "{\"model_type\": \"llama\", " BASE_FIELDS ", \"eos_token_id\": [1, \"2\"]}", T2_ERR_FORMAT,
     "eos_token_id"},
    {"too many eos", "{\"model_type\": \"llama\", " BASE_FIELDS ", \"eos_token_id\": [1,2,3,4,5,6,7,8,9]}", T2_ERR_FORMAT,
     "eos_token_id"},
    {"rms_norm_eps zero", "{\"model_type\": \"llama\", " BASE_FIELDS ", \"rms_norm_eps\": 0}", T2_ERR_FORMAT,
     "rms_norm_eps"},
    {"mlp_bias", "{\"model_type\": \"llama\", " BASE_FIELDS ", \"mlp_bias\": true}", T2_ERR_UNSUPPORTED, "mlp_bias"},
};

START_TEST(test_bad_config) {
    const bad_cfg *b = &s_bad[_i];
    t2_model_config c;
    t2_status s;
    if (b->json) s = load(b->json, &c);
    else s = t2_model_config_load(g_path, &c);   /* never written */
    ck_assert_msg(s == b->want, "%s: status %d (%s), want %d; detail: %s", b->what, s, t2_strerror(s), b->want,
                  t2_last_error());
    TU_ASSERT_ERR_HAS(b->needle);
    TU_ASSERT_ERR_HAS("config.json");
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("families");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_llama3);
    tcase_add_test(tc, test_llama2_defaults);
    tcase_add_test(tc, test_no_eos_no_bos);
    tcase_add_test(tc, test_explicit_head_dim);
    tcase_add_test(tc, test_rope_linear);
    tcase_add_test(tc, test_mistral_window);
    tcase_add_test(tc, test_qwen2);
    suite_add_tcase(s, tc);
    tc = tcase_create("refusals");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_bad_config, 0, (int)(sizeof s_bad / sizeof *s_bad));
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(suite()); }
