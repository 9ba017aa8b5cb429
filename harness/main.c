/* main.c — pgrace: the built-in scenarios, then the command line (commands.c). */
#include "app.h"

int main(int argc, char **argv)
{
    return pgr_main(argc, argv);
}
