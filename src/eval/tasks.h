/* Evaluation suites and task files (docs/design.md, "Evaluation"; docs/eval.md).
 *
 * A suite is a directory holding suite.json:
 *   {"name": "S", "seed": 1234,
 *    "tasks": [{"name": "t", "file": "t.jsonl", "type": "choice|generate|perplexity",
 *               "chance": 0.25, "max_examples": 100, "description": "…",
 *               "long_context": false}, …]}
 * ("seed" is optional (default 0); "chance", "max_examples", "description"
 * and "long_context" are optional; "file" is relative to the suite directory
 * unless absolute). Task names are unique and contain no comma.
 *
 * A task file is JSONL, one example per line (blank lines are skipped):
 *   {"type":"choice","context":"…","choices":["…", …],"answer":i}
 *   {"type":"generate","prompt":"…","target":"…","max_tokens":n,
 *    "match":"exact"|"contains", "stop":["\n", …] (optional)}
 *   {"type":"perplexity","text":"…"}
 * "type" may be left out; when present it must be the task's type. Other keys
 * (an "id", say) are ignored. Choice tasks need >= 2 non-empty choices and an
 * integer answer in [0, #choices); a generate example needs 1 <= max_tokens
 * <= 1048576; a perplexity text is non-empty.
 *
 * Every error names the file, and for task files the line ("t.jsonl:3: …"),
 * the field and what was expected. */
#ifndef XD_EVAL_TASKS_H
#define XD_EVAL_TASKS_H

#include <stdint.h>

typedef enum { XD_TASK_CHOICE = 0, XD_TASK_GENERATE, XD_TASK_PERPLEXITY } xd_task_type;
typedef enum { XD_MATCH_EXACT = 0, XD_MATCH_CONTAINS } xd_match;

typedef struct {
    int line;       /* 1-based line of the task file */
    char *text;     /* choice: context; generate: prompt; perplexity: text */
    /* choice */
    char **choices;
    int n_choices, answer;
    /* generate */
    char *target;
    int max_tokens;
    xd_match match;
    char **stop; /* stop strings: the output is cut before the first one */
    int n_stop;
} xd_example;

typedef struct {
    char *name, *file, *path; /* file as written in suite.json; path = resolved */
    char *description;        /* NULL if none */
    xd_task_type type;
    double chance;            /* NAN if not given */
    int max_examples;         /* 0 = all */
    int long_context;
    int acc_norm;        /* choice tasks: "metric": "acc_norm" — the length-normalised
                          * accuracy is the task's score (choices of unequal length) */
    xd_example *ex;           /* every example of the file (the few-shot pool) */
    int n_ex;
} xd_task;

typedef struct {
    char *name, *dir;
    uint64_t seed;
    xd_task *tasks;
    int n_tasks;
} xd_suite;

const char *xd_task_type_name(xd_task_type t);
/* "acc", "exact" / "contains" (the task's first example decides), "inv_ppl" */
const char *xd_task_metric(const xd_task *t);

/* Reads DIR/suite.json and the task files it names. only: NULL for every
 * task, else a comma-separated list of task names (unknown names are an
 * error listing the suite's tasks); the suite keeps the order of
 * suite.json. */
int xd_suite_load(const char *dir, const char *only, xd_suite *s);
void xd_suite_free(xd_suite *s);

/* Parses one task file into t->ex / t->n_ex; every example must be of
 * t->type. `task` names the task in error messages. */
int xd_task_file_load(const char *path, xd_task_type type, const char *task, xd_task *t);
void xd_task_free(xd_task *t);

#endif
