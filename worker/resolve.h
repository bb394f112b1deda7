/* resolve.h: reading a record written with one Avro schema (the writer's,
 * e.g. a newer version from the Schema Registry) as another (our reader
 * schema, schemas/NAME.avsc), by Avro's schema resolution rules: fields
 * matched by name in any order, writer fields we do not know skipped,
 * reader fields the writer lacks filled from their defaults, the
 * promotions int -> long/float/double, long -> float/double, float ->
 * double, string <-> bytes, enums by symbol, unions by branch.
 *
 * A resolution "transcodes": it turns the writer's Avro body into the body
 * our reader schema would have, which the codec's hand-written decoders
 * then read and validate as usual. Resolution is checked once, when it is
 * built; an incompatible pair is refused with the first reason found
 * ("field 'item_id' is missing from the writer schema and has no default").
 *
 * Thread safety: a resolution may be used by several threads; transcoding
 * is serialised per resolution. */
#ifndef UL_RESOLVE_H
#define UL_RESOLVE_H

#include <stddef.h>

#include <avro.h>

#include "codec.h"

typedef struct resolve resolve;

/* Build the resolution of `writer` into the reader schema `reader_text`
 * (its JSON: field defaults are read from it). Returns UL_OK,
 * UL_ERR_ARG (incompatible: the reason in errstr), or UL_ERR_NOMEM. The
 * writer schema is referenced, not copied. */
int resolve_new(avro_schema_t wschema, const char *reader_text, resolve **out, char *errstr,
                size_t errstr_size);
void resolve_destroy(resolve *res);

/* 1 when the writer schema equals the reader's (the body needs no change). */
int resolve_is_identity(const resolve *res);

/* The reader-schema body of one writer-schema body into `out` (reset, then
 * written). UL_OK, UL_ERR_PARSE when the body does not decode against the
 * writer schema (truncated, trailing bytes, a length past the end, a bad
 * union branch), UL_ERR_NOMEM. */
int resolve_transcode(resolve *res, const void *body, size_t len, codec_buf *out, char *errstr,
                      size_t errstr_size);

#endif
