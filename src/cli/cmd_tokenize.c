/* cmd_tokenize.c: placeholder until the command lands in this session. */
#include <stdio.h>
#include "cli/cli.h"
int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "autointerp tokenize: not yet\n");
    return 1;
}
