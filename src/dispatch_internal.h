/* What dispatch.c and submit.c share: the wire form of outcomes and how
 * keys are hashed. */
#ifndef SHOAL_DISPATCH_INTERNAL_H
#define SHOAL_DISPATCH_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "payload_internal.h"
#include "shoal/dispatch.h"
#include "shoal/wire.h"

/* ---- the wire form of outcomes (dispatch.c, submit.c) ------------------ */

/* Writes an outcome object:
 *   {"id", "status", "node", "attempts", "result" | "error"}
 * id: the payload when present, else *num_id, else null. status names
 * shoal_outcome_status_t; node NULL writes null; an ERROR or
 * TIMEOUT writes "error" from error when present, else {code_name,
 * message}. */
void shoal__outcome_write(shoal__pw_t *w, const shoal_payload_t *id,
                          const int64_t *num_id, shoal_outcome_status_t status,
                          const char *node, unsigned attempts,
                          const shoal_payload_t *result,
                          const shoal_payload_t *error, const char *code_name,
                          const char *message);

/* The bytes a key value hashes by, the same whatever the codec: a string's
 * unescaped bytes, an integer's decimal digits, any other value its JSON
 * text. Writes into scratch (cleared first) or points into key. Returns 0
 * or a codec error. */
int shoal__dispatch_key_bytes(const shoal_payload_t *key, shoal_buf_t *scratch,
                              const char **bytes, size_t *len);

#endif
