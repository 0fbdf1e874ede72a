/* Labelled JSONL data (src/io/labeled.h; issue 15, criteria 4 and 7): classes numbered in
 * sorted order (the same in every file with the same values), integer values read as their
 * decimal text, the test split renumbered with the training classes; a missing or mistyped
 * field, malformed JSON, one class only, and a test class with no training examples are
 * refused naming the file, the line and the field. */
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "io/labeled.h"
#include "test.h"
#include "xdistill.h"

static char dir[64];

static const char *write_file(const char *name, const char *text) {
    static char p[4][128];
    static int k;
    char *path = p[k++ % 4];
    snprintf(path, 128, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static const char *const ATTR[] = {"gender", "age"};

/* Counterfactual texts: from a field, and made by a word swap list (by hand: case kept,
 * possessives, a UTF-8 name, words that are not listed untouched); bad lists and a missing
 * field are refused naming the file and the line. */
static void test_pairs(xd_labeled *tr, const char *train) {
    char train_path[128]; /* write_file reuses its buffers */
    snprintf(train_path, sizeof train_path, "%s", train);
    const char *sw = write_file("swaps.txt",
        "# gender words\n"
        "he she\n"
        "she he\n"
        "her his\n"
        "his  her\n"
        "\n"
        "Sonya\tThomas\n"
        "Zo\xc3\xab Max\n");
    xd_swap_list s;
    CHECK(xd_swap_list_load(sw, &s) == 0 && s.n == 6, "swap list: %s", xd_last_error());
    int k = -1;
    char *t = xd_swap_apply(&s, "She met HIS friend; Sonya's dog and Zo\xc3\xab-he! Shell, sheep.", &k);
    CHECK(t && !strcmp(t, "He met HER friend; Thomas's dog and Max-she! Shell, sheep.") && k == 5,
          "swapped: '%s' (%d words)", t ? t : "(null)", k);
    free(t);
    t = xd_swap_apply(&s, "", &k);
    CHECK(t && !strcmp(t, "") && k == 0, "empty text");
    free(t);
    int64_t changed = -1;
    CHECK(xd_labeled_swap_pairs(tr, &s, &changed) == 0 && changed == 4 &&
              !strcmp(tr->pair_text[0], "He is a nurse.") && !strcmp(tr->pair_text[3], "She cares.") &&
              strstr(tr->pair_source, "swaps.txt"),
          "swap pairs: %s (%lld changed)", xd_last_error(), (long long)changed);
    xd_swap_list_free(&s);
    struct { const char *text, *want; } bad[] = {
        {"he she\nshe\n", "line 2: expected two words"},
        {"he she it\n", "line 1: expected two words"},
        {"Mr. Ms.\n", "'Mr.' is not one word"},
        {"he she\n# c\nhe it\n", "line 3: 'he' is swapped already on line 1"},
        {"# nothing\n\n", "no swaps"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char name[32];
        snprintf(name, sizeof name, "badswap%zu.txt", i);
        const char *p = write_file(name, bad[i].text);
        int rc = xd_swap_list_load(p, &s);
        CHECK(rc < 0 && strstr(xd_last_error(), name) && strstr(xd_last_error(), bad[i].want),
              "bad swap list %zu: %s", i, xd_last_error());
        if (rc == 0) xd_swap_list_free(&s);
    }
    CHECK(xd_swap_list_load("/nonexistent.txt", &s) < 0 &&
              strstr(xd_last_error(), "/nonexistent.txt"), "missing swap list: %s", xd_last_error());
    /* from a field: every record must have it */
    xd_labeled d;
    const char *cf = write_file("cf.jsonl",
        "{\"bio\":\"She is.\",\"cf\":\"He is.\",\"job\":\"a\",\"gender\":\"f\",\"age\":1}\n"
        "{\"bio\":\"He is.\",\"cf\":\"She is.\",\"job\":\"b\",\"gender\":\"m\",\"age\":1}\n"
        "{\"bio\":\"He was.\",\"job\":\"b\",\"gender\":\"m\",\"age\":1}\n");
    CHECK(xd_labeled_load_pairs(cf, "bio", "cf", "job", ATTR, 2, &d) < 0 &&
              strstr(xd_last_error(), "cf.jsonl: line 3") &&
              strstr(xd_last_error(), "counterfactual field \"cf\" is missing"),
          "a record without its counterfactual: %s", xd_last_error());
    CHECK(xd_labeled_load_pairs(train_path, "bio", "bio", "job", ATTR, 2, &d) == 0 &&
              !strcmp(d.pair_text[1], "He is a surgeon.") &&
              !strcmp(d.pair_source, "field \"bio\""),
          "pairs from a field: %s", xd_last_error());
    xd_labeled_free(&d);
    printf("counterfactual texts: a swap list by hand, %zu bad lists and a missing field refused\n",
           sizeof bad / sizeof *bad + 1);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/xd_labeled_XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    const char *train = write_file("train.jsonl",
        "{\"bio\":\"She is a nurse.\",\"job\":\"nurse\",\"gender\":\"f\",\"age\":40}\n"
        "\n"
        "{\"bio\":\"He is a surgeon.\",\"job\":\"surgeon\",\"gender\":\"m\",\"age\":30}\n"
        "{\"bio\":\"She operates.\",\"job\":\"surgeon\",\"gender\":\"f\",\"age\":30}\n"
        "{\"bio\":\"He cares.\",\"job\":\"nurse\",\"gender\":\"m\",\"age\":50,\"extra\":1}\n");
    xd_labeled tr;
    CHECK(xd_labeled_load(train, "bio", "job", ATTR, 2, &tr) == 0, "load: %s", xd_last_error());
    CHECK(tr.n == 4 && tr.label.n_classes == 2 && !strcmp(tr.label.classes[0], "nurse") &&
              !strcmp(tr.label.classes[1], "surgeon"), "label classes");
    const int32_t job[4] = {0, 1, 1, 0}, gen[4] = {0, 1, 0, 1}, age[4] = {1, 0, 0, 2};
    int ok = tr.n == 4;
    for (int i = 0; ok && i < 4; i++)
        ok = tr.label.id[i] == job[i] && tr.attr[0].id[i] == gen[i] && tr.attr[1].id[i] == age[i];
    CHECK(ok && tr.attr[1].n_classes == 3 && !strcmp(tr.attr[1].classes[2], "50") &&
              tr.line[1] == 3 && !strcmp(tr.text[3], "He cares."),
          "ids, integer values as text, source lines");
    /* the test split: other values first, renumbered with the training classes */
    const char *test = write_file("test.jsonl",
        "{\"bio\":\"x\",\"job\":\"surgeon\",\"gender\":\"m\",\"age\":50}\n"
        "{\"bio\":\"y\",\"job\":\"nurse\",\"gender\":\"f\",\"age\":30}\n");
    xd_labeled te;
    CHECK(xd_labeled_load(test, "bio", "job", ATTR, 2, &te) == 0 && xd_labeled_align(&tr, &te) == 0,
          "test: %s", xd_last_error());
    CHECK(te.label.id[0] == 1 && te.label.id[1] == 0 && te.attr[0].id[0] == 1 &&
              te.attr[1].id[0] == 2 && te.attr[1].id[1] == 0 && te.attr[1].n_classes == 3,
          "test ids in the training numbering");
    xd_labeled_free(&te);
    const char *unseen = write_file("unseen.jsonl",
        "{\"bio\":\"x\",\"job\":\"nurse\",\"gender\":\"m\",\"age\":30}\n"
        "{\"bio\":\"y\",\"job\":\"pilot\",\"gender\":\"f\",\"age\":30}\n");
    CHECK(xd_labeled_load(unseen, "bio", "job", ATTR, 2, &te) == 0 && xd_labeled_align(&tr, &te) < 0 &&
              strstr(xd_last_error(), "unseen.jsonl: line 2") && strstr(xd_last_error(), "pilot") &&
              strstr(xd_last_error(), "no examples in the training split"),
          "a class without training examples: %s", xd_last_error());
    xd_labeled_free(&te);
    test_pairs(&tr, train);
    xd_labeled_free(&tr);
    /* bad input */
    struct { const char *text, *want1, *want2; } bad[] = {
        {"{\"bio\":\"a\",\"job\":\"n\",\"gender\":\"f\",\"age\":1}\n{\"bio\":\"b\",\"gender\":\"m\",\"age\":2}\n",
         "line 2", "label field \"job\" is missing"},
        {"{\"bio\":\"a\",\"job\":\"n\",\"gender\":\"f\",\"age\":1}\n{\"bio\":\"b\",\"job\":\"s\",\"gender\":[1],\"age\":2}\n",
         "line 2", "attribute field \"gender\" is an array"},
        {"{\"bio\":\"\",\"job\":\"n\",\"gender\":\"f\",\"age\":1}\n", "line 1", "text field \"bio\" is empty"},
        {"{\"bio\":\"a\",\"job\":\"n\",\"gender\":\"f\",\"age\":1}\n{\"bio\": oops}\n", "line 2", "malformed JSON"},
        {"{\"bio\":\"a\",\"job\":\"n\",\"gender\":\"f\",\"age\":1}\n{\"bio\":\"b\",\"job\":\"n\",\"gender\":\"m\",\"age\":1}\n",
         "label field \"job\"", "at least 2"},
        {"[1, 2]\n", "line 1", "expected a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.jsonl", i);
        const char *p = write_file(name, bad[i].text);
        xd_labeled d;
        int rc = xd_labeled_load(p, "bio", "job", ATTR, 2, &d);
        CHECK(rc < 0 && strstr(xd_last_error(), name) && strstr(xd_last_error(), bad[i].want1) &&
                  strstr(xd_last_error(), bad[i].want2),
              "bad case %zu: %s", i, xd_last_error());
        if (rc == 0) xd_labeled_free(&d);
    }
    xd_labeled d;
    CHECK(xd_labeled_load("/nonexistent.jsonl", "bio", "job", ATTR, 2, &d) < 0 &&
              strstr(xd_last_error(), "/nonexistent.jsonl"), "missing file: %s", xd_last_error());
    printf("labelled data: classes, alignment, %zu bad inputs refused with file, line and field\n",
           sizeof bad / sizeof *bad + 2);
    if (t_fail == 0) xd_rmtree(dir);
    return test_summary("test_labeled");
}
