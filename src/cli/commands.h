#ifndef XD_COMMANDS_H
#define XD_COMMANDS_H
/* Each command takes argv with argv[0] = the command name and returns the
 * process exit status (0 ok, 1 error, 2 usage). */
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_teacher_logits(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_tasks(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_heads(int argc, char **argv);
int cmd_lora(int argc, char **argv);
int cmd_debias(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
#endif
