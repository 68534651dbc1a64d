/* cmd_inspect.c: placeholder until the command lands in this session. */
#include <stdio.h>
#include "cli/cli.h"
int cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "autointerp inspect: not yet\n");
    return 1;
}
