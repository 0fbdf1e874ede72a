/* Options shared by the training commands (pretrain, finetune). */
#ifndef XD_TRAIN_ARGS_H
#define XD_TRAIN_ARGS_H

#include "train/train.h"

/* If argv[*i] is a training option, parses it (and its value) into o and
 * returns 1; 0 if it is not one; -1 on a bad value (error printed). */
int train_arg(int argc, char **argv, int *i, xd_train_opts *o, int *threads);
/* Usage text of the shared options. */
extern const char *train_args_usage;
/* Opens the token data, trains m on it and prints a JSON summary; returns the
 * exit status. */
int train_run(xd_model *m, const char *data_path, const xd_train_opts *o);
/* 1 (and a line on stderr saying how to continue) when a run stopped at --stop-at
 * before its last step: the caller then skips what follows a finished run. */
int train_stopped(const xd_train_opts *o, const xd_train_result *r);

#endif
