/* core/strbuf.h: appends, growth, clear, take and the latched error. */
#include <string.h>

#include "core/strbuf.h"
#include "test.h"

int main(void) {
    xd_sbuf b = {0};
    CHECK(b.s == NULL && b.n == 0, "empty");
    CHECK(xd_sb_puts(&b, "") == 0 && b.s && !strcmp(b.s, "") && b.n == 0, "adding \"\" makes \"\"");
    CHECK(xd_sb_puts(&b, "abc") == 0 && xd_sb_add(&b, "de\0f", 4) == 0 && b.n == 7 &&
              !memcmp(b.s, "abcde\0f", 8),
          "add / puts (bytes with a NUL)");
    CHECK(xd_sb_printf(&b, "|%d|%s|%.2f|", 42, "x", 1.5) == 0 && b.n == 7 + 11 &&
              !strcmp(b.s + 7, "|42|x|1.50|"),
          "printf: %s", b.s + 7);
    xd_sb_clear(&b);
    CHECK(b.n == 0 && b.s && !b.s[0] && b.cap >= 8, "clear keeps the memory");
    /* growth well past the first allocation, in steps and in one printf */
    for (int i = 0; i < 10000; i++) xd_sb_add(&b, "0123456789", 10);
    CHECK(!b.err && b.n == 100000 && b.s[b.n] == 0 && !memcmp(b.s + 99990, "0123456789", 10),
          "100000 bytes");
    CHECK(xd_sb_printf(&b, "%5000d", 7) == 0 && b.n == 105000 && b.s[104999] == '7', "wide printf");
    char *t = xd_sb_take(&b);
    CHECK(t && strlen(t) == 105000 && b.s == NULL && b.n == 0 && b.cap == 0 && !b.err,
          "take hands over and empties");
    free(t);
    t = xd_sb_take(&b);
    CHECK(t && !strcmp(t, ""), "take of nothing is \"\"");
    free(t);
    /* a failed append latches: later appends are no-ops, take gives NULL */
    xd_sb_puts(&b, "kept");
    b.err = 1;
    CHECK(xd_sb_puts(&b, "x") == -1 && xd_sb_printf(&b, "%d", 1) == -1 && xd_sb_add(&b, "y", 1) == -1,
          "appends after an error fail");
    CHECK(b.n == 4 && !strcmp(b.s, "kept"), "the text so far stays readable");
    CHECK(xd_sb_take(&b) == NULL && b.s == NULL && !b.err, "take after an error: NULL, reset");
    xd_sb_puts(&b, "again");
    CHECK(b.s && !strcmp(b.s, "again"), "reusable after take");
    xd_sb_free(&b);
    CHECK(b.s == NULL && b.n == 0 && b.cap == 0, "free");
    return test_summary("test_strbuf");
}
