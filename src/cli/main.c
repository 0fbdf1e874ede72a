/* xdistill command-line entry point: dispatches to one file per command. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"inspect", cmd_inspect, "MODEL                      architecture, tensors, tokenizer"},
    {"tokenize", cmd_tokenize, "MODEL TEXT [--decode]      text to ids and pieces (or back)"},
    {"generate", cmd_generate, "MODEL -p PROMPT [-n N ...]  stream generated text"},
    {"pretrain", cmd_pretrain, "--config C --tokenizer M --data D -o DIR  train from scratch"},
    {"finetune", cmd_finetune, "MODEL --data D -o DIR     full fine-tune"},
    {"convert", cmd_convert, "TEACHER -o STUDENT [--window W --sinks S]  build the xLSTM hybrid student"},
    {"distill", cmd_distill, "stage1|stage2 ...          distil the teacher into the student"},
    {"ppl", cmd_ppl, "MODEL FILE [--ctx N]        perplexity of a text file"},
    {"data", cmd_data, "prep|info ...               pack text into token data for training"},
    {"teacher-logits", cmd_teacher_logits, "TEACHER --data D --seq T --rows N -o F  top-k logits for Stage II"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: xdistill COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "xdistill: error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
