/* xdistill merge -o OUT [--normalize] [--allow-unrelated] A[:w] B[:w] ...
 *   Stage III (DESIGN §3): θ = Σ λ_i θ_i over K experts trained by
 *   `distill stage2` from one Stage I checkpoint, streamed tensor by tensor
 *   (train/merge.h says what is checked and how the sum is formed). Weights
 *   default to 1/K; given weights must be finite, ≥ 0 and sum to 1 (within
 *   1e-6) unless --normalize, which divides them by their sum. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "train/merge.h"

static int usage(void) {
    fprintf(stderr,
            "usage: xdistill merge -o OUT [--normalize] [--allow-unrelated] EXPERT[:WEIGHT] ...\n"
            "  EXPERT           an HF student directory from `distill stage2`\n"
            "  :WEIGHT          its weight λ (default: 1/K for every expert; give all or none)\n"
            "  --normalize      divide the weights by their sum (else they must sum to 1)\n"
            "  --allow-unrelated  merge experts without one common base_hash (Stage I checkpoint)\n");
    return 2;
}

int cmd_merge(int argc, char **argv) {
    const char *out = NULL;
    xd_merge_opts o = {0, 0, 1};
    int k = 0, n_weighted = 0, rc = 2;
    char **paths = calloc((size_t)argc, sizeof *paths);
    const char **in = calloc((size_t)argc, sizeof *in);
    double *w = calloc((size_t)argc, sizeof *w);
    if (!paths || !in || !w) { rc = cli_error("out of memory"); goto done; }
    for (int i = 1; i < argc; i++) {
        int t = take_opt(argc, argv, &i, "-o", &out);
        if (t < 0) goto done;
        if (t) continue;
        if (!strcmp(argv[i], "--normalize")) o.normalize = 1;
        else if (!strcmp(argv[i], "--allow-unrelated")) o.allow_unrelated = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(); rc = 0; goto done; }
        else if (argv[i][0] == '-' && argv[i][1]) {
            cli_error("merge: unknown option '%s'", argv[i]);
            usage();
            goto done;
        } else {
            if (!(paths[k] = strdup(argv[i]))) { rc = cli_error("out of memory"); goto done; }
            char *c = strrchr(paths[k], ':');
            if (c) {
                char *end = NULL;
                errno = 0;
                double v = strtod(c + 1, &end);
                if (c[1] == 0 || *end || errno == ERANGE) {
                    cli_error("merge: '%s': the weight after ':' is not a number", argv[i]);
                    goto done;
                }
                *c = 0;
                w[k] = v;
                n_weighted++;
            }
            in[k] = paths[k];
            k++;
        }
    }
    if (!out || !k) { usage(); goto done; }
    if (n_weighted && n_weighted != k) {
        cli_error("merge: give a weight to every expert or to none (%d of %d have one)", n_weighted, k);
        goto done;
    }
    rc = xd_merge(in, n_weighted ? w : NULL, k, &o, out) ? cli_lib_error() : 0;
    if (!rc) printf("{\"kind\":\"merge\",\"experts\":%d,\"model\":\"%s\"}\n", k, out);
done:
    for (int i = 0; i < k; i++) free(paths[i]);
    free(paths);
    free(in);
    free(w);
    return rc;
}
