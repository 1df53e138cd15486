/* config.json for the Llama family (llama, mistral, qwen2), with Hugging Face's defaults for every
 * field a checkpoint may omit. Anything we would compute differently from the reference
 * implementation (other activations, rope types, qwen2's per-layer sliding window) is refused by
 * name rather than silently approximated. */
#include <t2/model.h>
#include <t2/error.h>

#include "json.h"

#include <string.h>

static t2_status get_int(json_t *j, const char *key, int required, const char *path, int *out, long long lo, long long hi) {
    long long v = *out;
    t2_status s = t2_json_int(j, key, required, path, &v);
    if (s) return s;
    if (v < lo || v > hi)
        return t2_set_error(T2_ERR_FORMAT, "%s: \"%s\" = %lld is outside [%lld, %lld]", path, key, v, lo, hi);
    *out = (int)v;
    return T2_OK;
}

static t2_status parse_rope_scaling(json_t *j, const char *path, t2_model_config *c) {
    json_t *rs = json_object_get(j, "rope_scaling");
    c->rope_kind = T2_ROPE_DEFAULT;
    if (!rs || json_is_null(rs)) return T2_OK;
    if (!json_is_object(rs)) return t2_set_error(T2_ERR_FORMAT, "%s: \"rope_scaling\" must be an object or null", path);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    if (!json_is_string(t)) return t2_set_error(T2_ERR_FORMAT, "%s: rope_scaling has no \"rope_type\"", path);
    const char *type = json_string_value(t);
    t2_status s;
    if (!strcmp(type, "default")) return T2_OK;
    if ((s = t2_json_num(rs, "factor", 1, path, &c->rope_factor))) return s;
    if (!(c->rope_factor > 0)) return t2_set_error(T2_ERR_FORMAT, "%s: rope_scaling.factor must be positive", path);
    if (!strcmp(type, "linear")) {
        c->rope_kind = T2_ROPE_LINEAR;
        return T2_OK;
    }
    if (!strcmp(type, "llama3")) {
        c->rope_kind = T2_ROPE_LLAMA3;
        c->rope_low_freq_factor = 1.0;
        c->rope_high_freq_factor = 4.0;
        c->rope_original_max_pos = 8192;
        if ((s = t2_json_num(rs, "low_freq_factor", 1, path, &c->rope_low_freq_factor)) ||
            (s = t2_json_num(rs, "high_freq_factor", 1, path, &c->rope_high_freq_factor)) ||
            (s = get_int(rs, "original_max_position_embeddings", 1, path, &c->rope_original_max_pos, 1, 1 << 30)))
            return s;
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return t2_set_error(T2_ERR_FORMAT, "%s: rope_scaling needs high_freq_factor > low_freq_factor", path);
        return T2_OK;
    }
    return t2_set_error(T2_ERR_UNSUPPORTED, "%s: rope_scaling type \"%s\" is not supported (default, linear, llama3 are)",
                        path, type);
}

static t2_status parse(json_t *j, const char *path, t2_model_config *c) {
    t2_status s;
    json_t *mt = json_object_get(j, "model_type");
    if (!json_is_string(mt)) return t2_set_error(T2_ERR_NOT_FOUND, "%s: missing field \"model_type\"", path);
    snprintf(c->model_type, sizeof c->model_type, "%s", json_string_value(mt));
    if (!strcmp(c->model_type, "llama")) c->arch = T2_ARCH_LLAMA;
    else if (!strcmp(c->model_type, "mistral")) c->arch = T2_ARCH_MISTRAL;
    else if (!strcmp(c->model_type, "qwen2")) c->arch = T2_ARCH_QWEN2;
    else
        return t2_set_error(T2_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not supported (llama, mistral, qwen2 are)", path,
                            json_string_value(mt));

    json_t *act = json_object_get(j, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return t2_set_error(T2_ERR_UNSUPPORTED, "%s: hidden_act must be \"silu\"", path);

    if ((s = get_int(j, "vocab_size", 1, path, &c->vocab_size, 1, 1 << 24)) ||
        (s = get_int(j, "hidden_size", 1, path, &c->hidden_size, 1, 1 << 16)) ||
        (s = get_int(j, "intermediate_size", 1, path, &c->intermediate_size, 1, 1 << 20)) ||
        (s = get_int(j, "num_hidden_layers", 1, path, &c->n_layers, 1, 1024)) ||
        (s = get_int(j, "num_attention_heads", 1, path, &c->n_heads, 1, 1024)))
        return s;
    c->n_kv_heads = c->n_heads;
    if ((s = get_int(j, "num_key_value_heads", 0, path, &c->n_kv_heads, 1, 1024))) return s;
    if (c->n_heads % c->n_kv_heads)
        return t2_set_error(T2_ERR_FORMAT, "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)", path,
                            c->n_heads, c->n_kv_heads);
    c->head_dim = c->hidden_size / c->n_heads;
    if ((s = get_int(j, "head_dim", 0, path, &c->head_dim, 2, 1024))) return s;
    if (c->head_dim % 2 || c->head_dim < 2)
        return t2_set_error(T2_ERR_FORMAT, "%s: head_dim %d must be even and positive", path, c->head_dim);
    c->max_position_embeddings = 2048;
    if ((s = get_int(j, "max_position_embeddings", 0, path, &c->max_position_embeddings, 1, 1 << 30))) return s;

    double eps = 1e-6;
    if ((s = t2_json_num(j, "rms_norm_eps", 0, path, &eps))) return s;
    if (!(eps > 0 && eps < 1)) return t2_set_error(T2_ERR_FORMAT, "%s: rms_norm_eps must be in (0, 1)", path);
    c->rms_norm_eps = (float)eps;
    c->rope_theta = 10000.0;
    if ((s = t2_json_num(j, "rope_theta", 0, path, &c->rope_theta))) return s;
    if (!(c->rope_theta > 1)) return t2_set_error(T2_ERR_FORMAT, "%s: rope_theta must be > 1", path);
    if ((s = parse_rope_scaling(j, path, c))) return s;

    c->tie_word_embeddings = 0;
    if ((s = t2_json_bool(j, "tie_word_embeddings", 0, path, &c->tie_word_embeddings))) return s;
    c->attention_bias = c->arch == T2_ARCH_QWEN2;
    if (c->arch != T2_ARCH_QWEN2 && (s = t2_json_bool(j, "attention_bias", 0, path, &c->attention_bias))) return s;
    if (c->arch == T2_ARCH_LLAMA) {
        int mlp_bias = 0;
        if ((s = t2_json_bool(j, "mlp_bias", 0, path, &mlp_bias))) return s;
        if (mlp_bias) return t2_set_error(T2_ERR_UNSUPPORTED, "%s: mlp_bias = true is not supported", path);
    }

    c->sliding_window = 0;
    if (c->arch == T2_ARCH_MISTRAL) {
        c->sliding_window = 4096;
        json_t *sw = json_object_get(j, "sliding_window");
        if (sw && json_is_null(sw)) c->sliding_window = 0;
        else if ((s = get_int(j, "sliding_window", 0, path, &c->sliding_window, 1, 1 << 30))) return s;
    } else if (c->arch == T2_ARCH_QWEN2) {
        int use_sw = 0;
        if ((s = t2_json_bool(j, "use_sliding_window", 0, path, &use_sw))) return s;
        if (use_sw) return t2_set_error(T2_ERR_UNSUPPORTED, "%s: qwen2 use_sliding_window = true is not supported", path);
    }

    c->bos_token_id = -1;
    json_t *bos = json_object_get(j, "bos_token_id");
    if (bos && !json_is_null(bos) && (s = get_int(j, "bos_token_id", 0, path, &c->bos_token_id, 0, c->vocab_size - 1)))
        return s;
    c->n_eos = 0;
    json_t *eos = json_object_get(j, "eos_token_id");
    if (json_is_integer(eos)) {
        c->eos_token_ids[c->n_eos++] = (int)json_integer_value(eos);
    } else if (json_is_array(eos)) {
        size_t i;
        json_t *v;
        json_array_foreach(eos, i, v) {
            if (!json_is_integer(v) || c->n_eos == T2_MAX_EOS)
                return t2_set_error(T2_ERR_FORMAT, "%s: eos_token_id must be an integer or up to %d integers", path, T2_MAX_EOS);
            c->eos_token_ids[c->n_eos++] = (int)json_integer_value(v);
        }
    } else if (eos && !json_is_null(eos)) {
        return t2_set_error(T2_ERR_FORMAT, "%s: eos_token_id must be an integer or a list", path);
    }
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] < 0 || c->eos_token_ids[i] >= c->vocab_size)
            return t2_set_error(T2_ERR_FORMAT, "%s: eos_token_id %d is outside the vocabulary", path, c->eos_token_ids[i]);
    return T2_OK;
}

t2_status t2_model_config_load(const char *path, t2_model_config *cfg) {
    t2_status s;
    memset(cfg, 0, sizeof *cfg);
    json_t *j = t2_json_load_file(path, &s);
    if (!j) return s;
    if (!json_is_object(j)) s = t2_set_error(T2_ERR_FORMAT, "%s: not a JSON object", path);
    else s = parse(j, path, cfg);
    json_decref(j);
    return s;
}
