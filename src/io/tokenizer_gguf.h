/* Tokenizer from GGUF metadata (tokenizer.ggml.*). */
#ifndef XD_TOKENIZER_GGUF_H
#define XD_TOKENIZER_GGUF_H

#include "io/gguf.h"
#include "xdistill.h"

/* Builds the byte-level BPE tokenizer described by g's metadata; NULL with
 * xd_last_error() naming the file and the field on failure. */
xd_tokenizer *xd_tokenizer_from_gguf(const gguf_file *g);

/* Same, with the pre-tokenizer name replaced by pre (NULL: the file's). */
xd_tokenizer *xd_tokenizer_from_gguf_pre(const gguf_file *g, const char *pre);

#endif
