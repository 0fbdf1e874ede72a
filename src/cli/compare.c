/* xdistill compare TEACHER.json STUDENT.json -o WINTIE.json [--report REPORT.html]
 *                  [--logs LOG.jsonl ...] [--swa SWA.json] [--ledger LEDGER.json]
 * Win-and-tie of a student against its teacher (docs/design.md, "Win-and-tie"; formats in
 * docs/compare.md): prints the verdict, writes WINTIE.json and the HTML report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "eval/report.h"
#include "xdistill.h"

static const char USAGE[] =
    "usage: xdistill compare TEACHER.json STUDENT.json -o WINTIE.json [--report REPORT.html] "
    "[--logs LOG.jsonl ...] [--swa SWA.json] [--ledger LEDGER.json]";

int cmd_compare(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(USAGE);
    const char *teacher = NULL, *student = NULL, *out = NULL, *report = NULL, *swa = NULL,
               *ledger = NULL, *v;
    const char **logs = calloc((size_t)argc, sizeof *logs);
    if (!logs) return cli_error("out of memory");
    size_t n_logs = 0;
    int r, rc = 2;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "-o", &v))) {
            if (r < 0) goto done;
            out = v;
        } else if ((r = take_opt(argc, argv, &i, "--report", &v))) {
            if (r < 0) goto done;
            report = v;
        } else if ((r = take_opt(argc, argv, &i, "--swa", &v))) {
            if (r < 0) goto done;
            swa = v;
        } else if ((r = take_opt(argc, argv, &i, "--ledger", &v))) {
            if (r < 0) goto done;
            ledger = v;
        } else if ((r = take_opt(argc, argv, &i, "--logs", &v))) {
            if (r < 0) goto done;
            logs[n_logs++] = v;
            /* --logs A B C: the following non-option arguments are logs too */
            while (i + 1 < argc && argv[i + 1][0] != '-') logs[n_logs++] = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_error("compare: unknown option '%s'\n%s", argv[i], USAGE);
            goto done;
        } else if (!teacher) teacher = argv[i];
        else if (!student) student = argv[i];
        else {
            cli_error("compare: unexpected argument '%s'\n%s", argv[i], USAGE);
            goto done;
        }
    }
    if (!teacher || !student || !out) {
        cli_error("%s", USAGE);
        goto done;
    }
    rc = 1;
    xd_cmp_results rt = {0}, rs = {0}, rw = {0};
    xd_cmp_ledger lg = {0};
    xd_cmp c = {0};
    char *json = NULL, *html = NULL;
    xd_cmp_log *lgs = calloc(n_logs ? n_logs : 1, sizeof *lgs);
    size_t n_loaded = 0;
    if (!lgs) { cli_error("out of memory"); goto free_all; }
    if (xd_cmp_results_load(&rt, teacher) || xd_cmp_results_load(&rs, student) ||
        (swa && xd_cmp_results_load(&rw, swa)) || (ledger && xd_cmp_ledger_load(&lg, ledger))) {
        cli_lib_error();
        goto free_all;
    }
    for (; n_loaded < n_logs; n_loaded++)
        if (xd_cmp_log_load(&lgs[n_loaded], logs[n_loaded])) { cli_lib_error(); goto free_all; }
    if (xd_cmp_build(&c, &rt, &rs, swa ? &rw : NULL, lgs, n_logs, ledger ? &lg : NULL)) {
        cli_lib_error();
        goto free_all;
    }
    if (!(json = xd_cmp_wintie_json(&c)) || xd_cmp_write_text(out, json)) {
        cli_lib_error();
        goto free_all;
    }
    if (report && (!(html = xd_cmp_report_html(&c, NULL)) || xd_cmp_write_text(report, html))) {
        cli_lib_error();
        goto free_all;
    }
    puts(c.verdict);
    printf("  %zu tasks; win-and-tie: %s%s%s\n", c.n, out, report ? "; report: " : "", report ? report : "");
    rc = 0;
free_all:
    free(json);
    free(html);
    xd_cmp_free(&c);
    for (size_t i = 0; i < n_loaded; i++) xd_cmp_log_free(&lgs[i]);
    free(lgs);
    xd_cmp_results_free(&rt);
    xd_cmp_results_free(&rs);
    xd_cmp_results_free(&rw);
    xd_cmp_ledger_free(&lg);
done:
    free(logs);
    return rc;
}
