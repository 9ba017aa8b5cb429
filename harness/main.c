/* main.c — pgrace: the built-in scenarios, then the command line (commands.c). */
#include "app.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    char err[PGR_ERRLEN];
    if (pgr_register_builtins(err, sizeof err) != 0) {
        fprintf(stderr, "pgrace: %s\n", err);
        return 2;
    }
    return pgr_main(argc, argv);
}
