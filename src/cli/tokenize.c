/* xdistill tokenize MODEL TEXT [--special] | --decode "ID ID ..." */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "xdistill.h"

static int decode_ids(const xd_tokenizer *t, const char *s) {
    size_t cap = strlen(s) / 2 + 1, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return cli_error("out of memory");
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n' || *p == '[' || *p == ']') p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= xd_tokenizer_n_tokens(t)) {
            free(ids);
            return cli_error("--decode: '%.20s' is not a token id in [0, %d)", p,
                             xd_tokenizer_n_tokens(t));
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    char *text;
    size_t len;
    int rc = xd_tokenizer_decode(t, ids, n, &text, &len);
    free(ids);
    if (rc) return cli_lib_error();
    fwrite(text, 1, len, stdout);
    putchar('\n');
    free(text);
    return 0;
}

static const char USAGE[] =
    "usage: xdistill tokenize MODEL TEXT [--special] | MODEL --decode \"IDS\"";

int cmd_tokenize(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(USAGE);
    const char *model = NULL, *text = NULL;
    int decode = 0, special = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--special")) special = 1;
        else if (!model) model = argv[i];
        else if (!text) text = argv[i];
        else return cli_error("tokenize: unexpected argument '%s'", argv[i]);
    }
    if (!model || !text) return cli_error("%s", USAGE);
    xd_tokenizer *t = xd_tokenizer_load(model);
    if (!t) return cli_lib_error();
    int rc = 0;
    if (decode) rc = decode_ids(t, text);
    else {
        int32_t *ids;
        size_t n;
        if (xd_tokenizer_encode(t, text, strlen(text), special, &ids, &n)) rc = cli_lib_error();
        else {
            printf("%zu tokens\n", n);
            for (size_t i = 0; i < n; i++) {
                char buf[256];
                int k = xd_tokenizer_token_bytes(t, ids[i], buf, sizeof buf - 1);
                buf[k < 0 ? 0 : k] = 0;
                printf("%6d  ", ids[i]);
                /* show the piece with control characters escaped */
                putchar('\'');
                for (int j = 0; j < k; j++) {
                    unsigned char ch = (unsigned char)buf[j];
                    if (ch == '\n') fputs("\\n", stdout);
                    else if (ch == '\t') fputs("\\t", stdout);
                    else if (ch < 32) printf("\\x%02x", ch);
                    else putchar(ch);
                }
                puts("'");
            }
            free(ids);
        }
    }
    xd_tokenizer_free(t);
    return rc;
}
