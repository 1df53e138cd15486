/* Private: what forward.c, backward.c and adapter.c need from LoRAs (lora.c) and LoRA adapters. */
#ifndef T2_LORA_IMPL_H
#define T2_LORA_IMPL_H

#include <t2/lora.h>

#include "kernels.h"

/* The LoRA's matrix adapting (layer, kind), or -1. */
int t2__lora_index(const t2_lora *l, int layer, int kind);
/* The model the LoRA was made or loaded for. Borrowed. */
const t2_model *t2__lora_model(const t2_lora *l);
/* alpha / rank. */
float t2__lora_scale(const t2_lora *l);
/* Matrix i's factors as F32 weights over the parameter block: A [rank × cols], B [rows × rank].
 * Borrowed, valid until t2_lora_free. */
const t2_weight *t2__lora_A(const t2_lora *l, int i);
const t2_weight *t2__lora_B(const t2_lora *l, int i);
/* Offset of matrix i's A in t2_lora_params (its B follows at + rank·cols). */
size_t t2__lora_offset(const t2_lora *l, int i);

/* The LoRA a T2_APPLY_LORA adapter runs (its own copy), or NULL for an SVF adapter. Borrowed, valid
 * until t2_adapter_free. */
const t2_lora *t2__adapter_lora(const t2_adapter *a);

#endif
