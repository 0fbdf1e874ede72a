/* Small file helpers, the one copy of each: whole-file reads, path joining
 * and stat tests.
 * (Whole binary files are memory-mapped instead: io/mapfile.h; files are
 * written atomically through io/atomic.h.) */
#ifndef XD_FILE_H
#define XD_FILE_H

#include <stddef.h>
#include <stdio.h>

/* Reads the whole of `path` into *data: malloc'ed, NUL-terminated after its
 * *len bytes (the bytes may contain NULs). Returns 0, or -1 with *data
 * untouched and xd_last_error() "PATH: cannot open: REASON", "PATH: read
 * error" or "out of memory reading PATH (N bytes)". */
int xd_read_file(const char *path, char **data, size_t *len);
/* The same for the rest of an open stream (a pipe, say); `what` names it in
 * errors. The stream is not closed. */
int xd_read_stream(FILE *f, const char *what, char **data, size_t *len);

/* dir + "/" + name into out[cap]; -1 with "DIR/NAME: path too long" if it
 * does not fit. */
int xd_path_join(char *out, size_t cap, const char *dir, const char *name);

/* 1 if path exists (after following links) and is a directory / a regular
 * file, else 0. */
int xd_is_dir(const char *path);
int xd_is_file(const char *path);

#endif
