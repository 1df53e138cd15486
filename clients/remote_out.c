/* remote_out.c — output of the remote commands: any reply message as JSON (walking the protobuf-c
 * descriptors, so a field added to t2.proto shows up in --json without a change here), and the small
 * formatters the human output uses. */
#include "remote.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A string for JSON: invalid UTF-8 bytes (a daemon bug, or a label from a sloppy file) become '?'. */
static json_t *jstr(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    char *copy = strdup(s);
    if (!copy) return json_null();
    for (unsigned char *p = (unsigned char *)copy; *p; p++)
        if (*p >= 0x80) *p = '?';
    j = json_string(copy);
    free(copy);
    return j ? j : json_null();
}

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *value(const ProtobufCFieldDescriptor *f, const void *p) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: return json_integer((json_int_t) * (const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return json_integer((json_int_t) * (const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT: return jnum(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return jnum(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL: return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        return ev ? json_string(ev->name) : json_integer(v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return jstr(s ? s : "");
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? rm_to_json(m) : json_null();
    }
    case PROTOBUF_C_TYPE_BYTES:
    default: return NULL;
    }
}

static size_t elem_size(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    default: return 4;
    }
}

json_t *rm_to_json(const ProtobufCMessage *m) {
    json_t *o = json_object();
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;   /* another member of the oneof is set */
        if (f->type == PROTOBUF_C_TYPE_BYTES) {
            char key[128];
            snprintf(key, sizeof key, "%s_bytes", f->name);
            size_t n = 0;
            if (f->label == PROTOBUF_C_LABEL_REPEATED) n = *(const size_t *)(base + f->quantifier_offset);
            else n = ((const ProtobufCBinaryData *)(base + f->offset))->len;
            json_object_set_new(o, key, json_integer((json_int_t)n));
            continue;
        }
        json_t *v;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)(base + f->offset);
            v = json_array();
            for (size_t k = 0; k < n; k++) {
                json_t *e = value(f, arr + k * elem_size(f->type));
                if (e) json_array_append_new(v, e);
            }
        } else {
            v = value(f, base + f->offset);
        }
        if (v) json_object_set_new(o, f->name, v);
    }
    return o;
}

void rm_print_json(json_t *j) {
    if (!j) return;
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);
    if (s) {
        puts(s);
        fflush(stdout);
        free(s);
    }
    json_decref(j);
}

const char *rm_duration(double s, char *buf, size_t cap) {
    if (!isfinite(s) || s < 0) snprintf(buf, cap, "-");
    else if (s < 60) snprintf(buf, cap, "%.1f s", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    return buf;
}

const char *rm_time(double t, char *buf, size_t cap) {
    if (!(t > 0) || !isfinite(t)) {
        snprintf(buf, cap, "-");
        return buf;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

const char *rm_bytes(uint64_t n, char *buf, size_t cap) {
    if (n < 1024) snprintf(buf, cap, "%llu B", (unsigned long long)n);
    else if (n < (1u << 20)) snprintf(buf, cap, "%.1f KiB", n / 1024.0);
    else if (n < (1u << 30)) snprintf(buf, cap, "%.1f MiB", n / 1048576.0);
    else snprintf(buf, cap, "%.2f GiB", n / 1073741824.0);
    return buf;
}

const char *rm_num(double v, const char *fmt, char *buf, size_t cap) {
    if (!isfinite(v)) snprintf(buf, cap, "-");
    else snprintf(buf, cap, fmt, v);
    return buf;
}
