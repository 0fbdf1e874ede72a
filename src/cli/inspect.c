#include <stdio.h>
#include "cli/commands.h"
int cmd_inspect(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "todo\n"); return 1; }
