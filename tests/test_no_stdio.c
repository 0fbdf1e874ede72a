/* Static check: the library (every .c / .h under src/ except src/cli/)
 * never writes to the terminal itself; its messages go through xd_log
 * (src/core/log.h). Fails, naming file and line, on any use outside comments
 * and string literals of the identifiers
 *     stderr stdout STDERR_FILENO STDOUT_FILENO printf vprintf puts putchar
 *     perror isatty
 * (so fprintf(stderr, …), fputs(s, stderr), fputc(c, stdout), write(STDERR_FILENO, …)
 * are caught; fprintf(f, …) to a file, snprintf and xd_sb_printf are not).
 * A self-test first checks that the scanner catches each of them. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"

static const char *const FORBIDDEN[] = {"stderr", "stdout", "STDERR_FILENO", "STDOUT_FILENO",
                                        "printf", "vprintf", "puts",  "putchar",
                                        "perror", "isatty",  NULL};

static int is_id(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* s[b ...] is the archetype of __attribute__((format(printf, 1, 2))) */
static int in_format_attribute(const char *s, size_t b) {
    while (b > 0 && (s[b - 1] == ' ' || s[b - 1] == '\t')) b--;
    if (b == 0 || s[--b] != '(') return 0;
    while (b > 0 && (s[b - 1] == ' ' || s[b - 1] == '\t')) b--;
    size_t e = b;
    while (b > 0 && is_id((unsigned char)s[b - 1])) b--;
    return (e - b == 6 && !memcmp(s + b, "format", 6)) || (e - b == 10 && !memcmp(s + b, "__format__", 10));
}

/* Counts forbidden identifiers in C source text (comments, string and
 * character literals skipped); reports each as "name:line: id". */
static int scan(const char *name, const char *s, int report) {
    int line = 1, hits = 0;
    size_t i = 0, n = strlen(s);
    while (i < n) {
        char c = s[i];
        if (c == '\n') {
            line++;
            i++;
        } else if (c == '/' && s[i + 1] == '/') {
            while (i < n && s[i] != '\n') i++;
        } else if (c == '/' && s[i + 1] == '*') {
            for (i += 2; i < n && !(s[i] == '*' && s[i + 1] == '/'); i++)
                if (s[i] == '\n') line++;
            i += 2;
        } else if (c == '"' || c == '\'') {
            for (i++; i < n && s[i] != c && s[i] != '\n'; i++)
                if (s[i] == '\\' && i + 1 < n) {
                    if (s[i + 1] == '\n') line++;
                    i++;
                }
            i++;
        } else if (is_id((unsigned char)c) && !(c >= '0' && c <= '9')) {
            size_t b = i;
            while (i < n && is_id((unsigned char)s[i])) i++;
            for (int k = 0; FORBIDDEN[k]; k++)
                if (strlen(FORBIDDEN[k]) == i - b && !memcmp(s + b, FORBIDDEN[k], i - b) &&
                    !in_format_attribute(s, b)) {
                    hits++;
                    if (report)
                        fprintf(stderr, "%s:%d: %s: the library must not write to the terminal "
                                        "(use xd_log, src/core/log.h)\n", name, line, FORBIDDEN[k]);
                }
        } else if (c >= '0' && c <= '9') {
            while (i < n && is_id((unsigned char)s[i])) i++;
        } else {
            i++;
        }
    }
    return hits;
}

static void self_test(void) {
    static const struct { const char *src; int hits; } cases[] = {
        {"fprintf(stderr, \"x\\n\");", 1},
        {"fputs(s, stderr);", 1},
        {"fputc('\\n', stderr);", 1},
        {"fprintf(stdout, \"%d\", 1);", 1},
        {"perror(\"open\");", 1},
        {"putchar('a');", 1},
        {"printf(\"%d\\n\", x);", 1},
        {"  puts(msg);", 1},
        {"vprintf(fmt, ap);", 1},
        {"if (isatty(STDERR_FILENO)) x = 1;", 2},
        {"write(STDOUT_FILENO, b, n);", 1},
        {"x = 1; /* c */ printf(\"a /* b */\"); // d", 1},
        /* allowed */
        {"snprintf(buf, n, \"%s\", s); vsnprintf(buf, n, fmt, ap);", 0},
        {"fprintf(f, \"%s\\n\", text); fputs(line, o);", 0},
        {"xd_sb_printf(b, \"x\"); xd_sb_puts(b, s); puts_(b, s); my_stderr = 0;", 0},
        {"/* never writes to stderr; printf */ // puts(x)", 0},
        {"const char *m = \"printf(stderr)\"; char q = '\"'; int z = 0x1e5;", 0},
        {"s = \"a\\\"stderr\\\"\"; t = 'x';", 0},
        {"int f(const char *fmt, ...) __attribute__((format(printf, 1, 2)));", 0},
        {"#define P(a, b) __attribute__((__format__ (printf, a, b)))", 0},
        {"p = printf; q = (printf)(\"x\");", 2},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int h = scan("self-test", cases[k].src, 0);
        CHECK(h == cases[k].hits, "self-test: %s: %d hits, expected %d", cases[k].src, h,
              cases[k].hits);
    }
}

static int g_files, g_hits;

static void scan_file(const char *path) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "%s: cannot open", path);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = s ? fread(s, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!s) return;
    s[got] = 0;
    g_hits += scan(path, s, 1);
    g_files++;
    free(s);
}

static void walk(const char *dir, int top) {
    DIR *d = opendir(dir);
    CHECK(d != NULL, "%s: cannot open", dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st)) continue;
        size_t l = strlen(e->d_name);
        if (S_ISDIR(st.st_mode)) {
            if (!(top && !strcmp(e->d_name, "cli"))) walk(p, 0);
        } else if (l > 2 && (!strcmp(e->d_name + l - 2, ".c") || !strcmp(e->d_name + l - 2, ".h"))) {
            scan_file(p);
        }
    }
    closedir(d);
}

int main(int argc, char **argv) {
    self_test();
    /* a directory given on the command line is checked instead (to try the check) */
    walk(argc > 1 ? argv[1] : XD_SOURCE_DIR "/src", 1);
    printf("%d library source files scanned, %d terminal writes\n", g_files, g_hits);
    CHECK(g_files > 50 || argc > 1, "only %d files under src/", g_files);
    CHECK(g_hits == 0, "%d places in the library write to the terminal (listed above)", g_hits);
    return test_summary("test_no_stdio");
}
