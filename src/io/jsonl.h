/* JSONL files: one JSON value per line (blank lines skipped, a UTF-8 BOM on the first
 * line skipped), read line by line. One reader for data prep, labelled data, ... */
#ifndef XD_JSONL_H
#define XD_JSONL_H

#include <jansson.h>
#include <stddef.h>

/* Calls fn(ctx, path, lineno, value) for the value of every non-blank line, in order,
 * and stops at the first non-zero return (returned as is). A line that is not JSON is an
 * error naming the file, the line and the column. */
int xd_jsonl_each(const char *path, int (*fn)(void *ctx, const char *path, unsigned long lineno,
                                              json_t *value),
                  void *ctx);

/* "an object", "a string", ... for error messages. */
const char *xd_json_type_name(const json_t *v);

/* 1 if s[0 .. n) holds only white space (space, tab, newline, CR, VT, FF). */
int xd_is_blank(const char *s, size_t n);

#endif
