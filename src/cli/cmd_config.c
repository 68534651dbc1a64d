/* cmd_config.c: placeholder until the command lands in this session. */
#include <stdio.h>
#include "cli/cli.h"
int cmd_config(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "autointerp config: not yet\n");
    return 1;
}
