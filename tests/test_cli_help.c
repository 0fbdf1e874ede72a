/* Every command and subcommand answers -h and --help, wherever they stand among its
 * arguments, with its usage on stdout and exit status 0. The commands are those that
 * `xdistill --help` lists (main.c's dispatch table), so a command added there is checked
 * too; the subcommands are those that a command's usage names ("xdistill data prep ..."). */
#include <ctype.h>
#include <string.h>

#include "cli_util.h"
#include "test.h"

#define MAX_NAMES 64
#define NAME_LEN 32

typedef struct {
    char name[MAX_NAMES][NAME_LEN];
    int n;
} names;

static int has_name(const names *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->name[i], name)) return 1;
    return 0;
}

static void add_name(names *s, const char *name, size_t len) {
    char buf[NAME_LEN];
    if (len >= NAME_LEN || s->n == MAX_NAMES) return;
    memcpy(buf, name, len);
    buf[len] = 0;
    if (!has_name(s, buf)) memcpy(s->name[s->n++], buf, len + 1);
}

/* The first word of each "  NAME  description" line after "commands:", options left out. */
static void parse_commands(const char *listing, names *s) {
    const char *p = strstr(listing, "commands:\n");
    for (p = p ? strchr(p, '\n') : NULL; p && !strncmp(p, "\n  ", 3); p = strchr(p + 1, '\n')) {
        const char *w = p + 3;
        size_t len = strcspn(w, " \n");
        if (*w != '-') add_name(s, w, len);
    }
}

/* The lower-case words after "xdistill CMD " in CMD's usage: its subcommands. */
static void parse_subcommands(const char *usage, const char *cmd, names *s) {
    char key[64];
    snprintf(key, sizeof key, "xdistill %s ", cmd);
    for (const char *p = strstr(usage, key); p; p = strstr(p + 1, key)) {
        const char *w = p + strlen(key);
        size_t len = 0;
        while (islower((unsigned char)w[len]) || isdigit((unsigned char)w[len]) || w[len] == '-')
            len++;
        if (len && islower((unsigned char)w[0])) add_name(s, w, len);
    }
}

/* `xdistill ARGS` asks for help: status 0, "usage" and want (when given) on stdout, no
 * error on stderr. The stdout goes to out. */
static void expect_help(const char *args, const char *want, char *out, size_t cap) {
    char err[4096];
    int st = test_cli_run(args, out, cap, TEST_CLI_STDOUT);
    CHECK(st == 0, "'%s': status %d, expected 0: %.300s", args, st, out);
    CHECK(strstr(out, "usage") != NULL, "'%s': stdout lacks 'usage': %.300s", args, out);
    CHECK(!want || strstr(out, want), "'%s': stdout lacks '%s': %.300s", args, want, out);
    test_cli_run(args, err, sizeof err, TEST_CLI_STDERR);
    CHECK(!strstr(err, "error"), "'%s': stderr has an error: %s", args, err);
}

/* -h, --help, and --help after an argument, all with the same text. */
static void check_help(const char *cmd, const char *want, char *out, size_t cap) {
    static char other[16384];
    char args[256];
    snprintf(args, sizeof args, "%s --help", cmd);
    expect_help(args, want, out, cap);
    snprintf(args, sizeof args, "%s -h", cmd);
    expect_help(args, want, other, sizeof other);
    CHECK(!strcmp(out, other), "'%s -h' and '%s --help' differ", cmd, cmd);
    snprintf(args, sizeof args, "%s some-argument --help", cmd);
    expect_help(args, want, other, sizeof other);
}

int main(void) {
    static char listing[16384], out[16384], other[16384];
    names cmds = {0};
    expect_help("--help", "commands:", listing, sizeof listing);
    expect_help("-h", "commands:", out, sizeof out);
    CHECK(!strcmp(out, listing), "'-h' and '--help' differ");
    expect_help("help", "commands:", out, sizeof out);
    CHECK(!strcmp(out, listing), "'help' and '--help' differ");
    parse_commands(listing, &cmds);

    /* the parse found the table: the commands of today are in it */
    static const char *const known[] = {"inspect", "tokenize", "generate", "pretrain", "finetune",
                                        "lora", "debias", "heads", "convert", "distill", "tasks",
                                        "eval", "compare", "merge", "ppl", "quantize", "data", "teacher-logits",
                                        "help"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        CHECK(has_name(&cmds, known[i]), "'xdistill --help' does not list '%s': %s", known[i],
              listing);

    static const char *const known_subs[][2] = {
        {"data", "prep"},   {"data", "info"},         {"data", "split"},      {"data", "echo"},
        {"tasks", "make"},  {"distill", "stage1"},    {"distill", "stage2"},  {"lora", "merge"},
        {"debias", "task"}, {"debias", "attribute"},  {"debias", "eval"},     {"debias", "report"}};
    int n_subs_found = 0;
    for (int c = 0; c < cmds.n; c++) {
        const char *cmd = cmds.name[c];
        check_help(cmd, NULL, out, sizeof out);
        char args[256];
        snprintf(args, sizeof args, "help %s", cmd);
        expect_help(args, NULL, other, sizeof other);
        CHECK(!strcmp(out, other), "'xdistill help %s' differs from '%s --help'", cmd, cmd);

        names subs = {0};
        parse_subcommands(out, cmd, &subs);
        for (int s = 0; s < subs.n; s++) {
            char sub[128], want[160];
            snprintf(sub, sizeof sub, "%s %s", cmd, subs.name[s]);
            snprintf(want, sizeof want, "xdistill %s", sub);
            check_help(sub, want, other, sizeof other);
        }
        for (size_t k = 0; k < sizeof known_subs / sizeof *known_subs; k++)
            if (!strcmp(known_subs[k][0], cmd)) {
                CHECK(has_name(&subs, known_subs[k][1]), "'%s --help' does not name '%s': %s", cmd,
                      known_subs[k][1], out);
                n_subs_found++;
            }
    }
    CHECK(n_subs_found == (int)(sizeof known_subs / sizeof *known_subs),
          "%d of the known subcommands' commands were listed", n_subs_found);

    /* errors stay on stderr with status 2 */
    CHECK(test_cli_run("distill", out, sizeof out, TEST_CLI_STDOUT) == 2 && !*out,
          "'distill': stdout '%s'", out);
    CHECK(test_cli_run("distill", out, sizeof out, TEST_CLI_STDERR) == 2 && strstr(out, "usage"),
          "'distill': stderr '%s'", out);
    CHECK(test_cli_run("data", out, sizeof out, TEST_CLI_STDERR) == 2 && strstr(out, "usage"),
          "'data': stderr '%s'", out);
    CHECK(test_cli_run("help frobnicate", out, sizeof out, TEST_CLI_STDERR) == 2 &&
              strstr(out, "unknown command 'frobnicate'"),
          "'help frobnicate': %s", out);
    printf("%d commands checked\n", cmds.n);
    return test_summary("test_cli_help");
}
