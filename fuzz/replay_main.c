/*
 * replay_main.c — a plain main() (gcc, no libFuzzer) that runs fuzzer inputs through the
 * same target: every file named, or every file in a directory named. Used by `make test`
 * to replay the corpus without libFuzzer. A violation is reported, not aborted on
 * (PGRACE_FUZZ_NO_ABORT=1); the exit status is 1 when any input broke an invariant,
 * 2 when an input cannot be read, else 0.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
long long pgr_fuzz_violations(void);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "replay: cannot read %s\n", path); return -1; }
    uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

int main(int argc, char **argv)
{
    setenv("PGRACE_FUZZ_NO_ABORT", "1", 1);
    LLVMFuzzerInitialize(&argc, &argv);
    long long inputs = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) { fprintf(stderr, "replay: cannot read %s\n", argv[i]); return 2; }
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            while (d && (e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.') continue;
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
                if (run_file(p) != 0) { closedir(d); return 2; }
                inputs++;
            }
            if (d) closedir(d);
        } else {
            if (run_file(argv[i]) != 0) return 2;
            inputs++;
        }
    }
    printf("replayed %lld input(s), %lld broke an invariant\n", inputs, pgr_fuzz_violations());
    return pgr_fuzz_violations() ? 1 : 0;
}
