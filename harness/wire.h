/*
 * wire.h — the PostgreSQL frontend/backend protocol, version 3, as pure functions over
 * buffers: no socket, no allocation but a batch's own, no global state. The proxy
 * (proxy.c, exec_wire.c) reads bytes and hands them here; fuzz/wire_fuzzer.c hands them
 * anything. Every reader checks every length against what is really there: a bad input
 * is an error value with a one-line reason, never a read past the end.
 *
 * Return convention of the readers of a stream: > 0 the length of the complete packet at
 * the start of the buffer, 0 more bytes are needed, -1 malformed (err says why).
 */
#ifndef PGRACE_WIRE_H
#define PGRACE_WIRE_H

#include "pgrace.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGR_WIRE_MAX_MSG ((size_t)1 << 30)   /* a message longer than 1 GiB is a violation */
#define PGR_WIRE_MAX_STARTUP 10000           /* as PostgreSQL's MAX_STARTUP_PACKET_LENGTH */
#define PGR_WIRE_PROTO_3 0x30000u            /* 3.0 */
#define PGR_WIRE_CANCEL_CODE 80877102u       /* 1234.5678 */
#define PGR_WIRE_SSL_CODE 80877103u          /* 1234.5679 */
#define PGR_WIRE_GSSENC_CODE 80877104u       /* 1234.5680 */

/* ---- packets ---- */

typedef enum {
    PGR_STARTUP_V3,          /* StartupMessage, protocol 3.x: forwarded to the server */
    PGR_STARTUP_SSL,         /* SSLRequest: answered 'N', the client goes on in the clear */
    PGR_STARTUP_GSSENC,      /* GSSENCRequest: answered 'N' likewise */
    PGR_STARTUP_CANCEL,      /* CancelRequest: pid and key of the backend to cancel */
} pgr_startup_kind;

typedef struct pgr_wire_startup {
    pgr_startup_kind kind;
    uint32_t version;        /* V3: the version asked for (major 3) */
    int32_t pid;             /* CANCEL */
    uint32_t key;            /* CANCEL */
    char user[64];           /* V3: the user and database asked for ("" when absent), cut */
    char database[64];
} pgr_wire_startup;

/* The startup packet at buf[0..n) (no type byte: length, code, contents). */
long pgr_wire_startup_read(const uint8_t *buf, size_t n, pgr_wire_startup *out, char *err, size_t errlen);

/* A typed message: type byte, then a length word that counts itself but not the type. */
typedef struct pgr_wire_msg {
    char type;
    const uint8_t *body;     /* len bytes after the length word (inside the caller's buffer) */
    size_t len;
} pgr_wire_msg;

/* The typed message at buf[0..n); its length word must be in 4..max+4. */
long pgr_wire_msg_read(const uint8_t *buf, size_t n, size_t max, pgr_wire_msg *m, char *err, size_t errlen);

/* ---- message bodies (each 0, or -1 when the body does not hold what the type says) ---- */

typedef struct pgr_wire_error {
    char severity[12];       /* 'V' (or 'S'): ERROR, FATAL, NOTICE ... */
    char sqlstate[6];        /* 'C' */
    char constraint[48];     /* 'n', "" none */
    char message[96];        /* 'M', cut */
} pgr_wire_error;
/* ErrorResponse or NoticeResponse. */
int pgr_wire_error_parse(const pgr_wire_msg *m, pgr_wire_error *e);

/* CommandComplete's tag: the rows it counts (its last word when that is a number, else 0). */
int pgr_wire_tag_rows(const pgr_wire_msg *m, long *rows);

#define PGR_WIRE_MAX_COLS 8  /* columns named in a step's first row */
typedef struct pgr_wire_rowdesc {
    int ncols;               /* the row's columns (all of them) */
    char name[PGR_WIRE_MAX_COLS][24];   /* the first columns' names, cut */
    short format[PGR_WIRE_MAX_COLS];    /* 0 text, 1 binary */
} pgr_wire_rowdesc;
int pgr_wire_rowdesc_parse(const pgr_wire_msg *m, pgr_wire_rowdesc *rd);
/* DataRow as "col=val, ..." (NULL for a null, <binary> for a binary value), cut to cap. */
int pgr_wire_datarow_format(const pgr_wire_rowdesc *rd, const pgr_wire_msg *m, char *out, size_t cap);

/* ReadyForQuery: its status byte, 'I' idle, 'T' in a transaction, 'E' in a failed one. */
int pgr_wire_ready_status(const pgr_wire_msg *m, char *status);
/* BackendKeyData: the backend's pid and its cancel key (protocol 3.0: 4 bytes). */
int pgr_wire_backend_key(const pgr_wire_msg *m, int32_t *pid, uint32_t *key);
/* Authentication*: its code (0 AuthenticationOk, 3 cleartext, 5 MD5, 10 SASL, ...). */
int pgr_wire_auth_code(const pgr_wire_msg *m, int32_t *code);
/* Query: its text (inside m's body, NUL-terminated there). */
int pgr_wire_query_text(const pgr_wire_msg *m, const char **sql);

/* ---- building messages (each returns the bytes written, 0 when cap is too small) ---- */

/* ErrorResponse with severity, SQLSTATE and message (NUL bytes cannot occur in C strings;
 * the message is cut to fit cap). */
size_t pgr_wire_error_build(uint8_t *out, size_t cap, const char *severity, const char *sqlstate, const char *message);
size_t pgr_wire_ready_build(uint8_t *out, size_t cap, char status);
size_t pgr_wire_cancel_build(uint8_t *out, size_t cap, int32_t pid, uint32_t key);
size_t pgr_wire_query_build(uint8_t *out, size_t cap, const char *sql);
size_t pgr_wire_backend_key_build(uint8_t *out, size_t cap, int32_t pid, uint32_t key);

/* ---- statements ---- */

/* The step's label for sql: the NAME of a comment pgrace:NAME in it (the program names its
 * steps), else its first words: "UPDATE invite", "INSERT INTO submission", "SELECT invite"
 * (the first table after FROM), "BEGIN", "COMMIT". Never empty ("statement"). */
void pgr_wire_label(const char *sql, char *out, size_t cap);

/* ---- the frontend's messages after startup, assembled into steps ---- */

typedef enum {
    PGR_FE_MORE,             /* an extended message: part of the batch, read on */
    PGR_FE_STEP,             /* Query, Sync or FunctionCall ended the batch: it is one step */
    PGR_FE_FLUSH,            /* Flush: the batch so far must reach the server now; the step
                              * goes on until its Sync */
    PGR_FE_TERMINATE,        /* Terminate: close both sides */
    PGR_FE_DROP,             /* CopyData, CopyDone, CopyFail outside a COPY (the server
                              * ignores them; so may the proxy) */
    PGR_FE_BAD,              /* malformed, or a message a client may not send now (err) */
} pgr_fe_action;

struct pgr_wire_names;       /* prepared statement names -> their text */

typedef struct pgr_wire_batch {
    size_t bytes;            /* the batch's length in the client's stream */
    int nmsgs;
    bool extended;           /* it holds extended-protocol messages (no Query) */
    char *sql;               /* the step's statement: the Query's text, or the text of the
                              * first Bind's statement, or the first Parse's; "" none */
    size_t sql_cap;
    char kind;               /* the message that ended it: 'Q', 'S', 'F', 'H'; 0 open */
    bool bound;              /* a Bind was seen */
    bool sealed;             /* the step began: sql and params stay as they are */
    int nparams;             /* the first Bind's parameters, for the step's record */
    const char *params[8];   /* into param_text; NULL for a null */
    char param_text[256];
    struct pgr_wire_names *names;
    bool oom;                /* out of memory: the step's SQL is missing, nothing else */
} pgr_wire_batch;

/* Add message m (complete, as read from the client) to the batch; what to do now. */
pgr_fe_action pgr_wire_batch_add(pgr_wire_batch *b, const pgr_wire_msg *m, char *err, size_t errlen);
/* A step was made of the batch: start the next one (statement names are kept). */
void pgr_wire_batch_reset(pgr_wire_batch *b);
void pgr_wire_batch_free(pgr_wire_batch *b);

/* ---- the backend's messages of one step, read into its outcome ---- */

typedef enum {
    PGR_BE_MORE,             /* relay it and read on */
    PGR_BE_READY,            /* ReadyForQuery: the step is complete */
    PGR_BE_COPY_IN,          /* CopyInResponse: the client's copy data goes to the server now */
    PGR_BE_BAD,              /* a message the server cannot have sent like this */
} pgr_be_action;

typedef struct pgr_wire_outcome {
    pgr_step *st;            /* filled: sqlstate (first error, else 00000), rows (the last
                              * CommandComplete), values (the first DataRow), constraint,
                              * message */
    pgr_wire_rowdesc rd;
    bool have_rd, have_row, have_error;
    char status;             /* ReadyForQuery's status; 0 not yet */
} pgr_wire_outcome;

/* Start reading a step's answer into st. */
void pgr_wire_outcome_init(pgr_wire_outcome *o, pgr_step *st);
pgr_be_action pgr_wire_outcome_add(pgr_wire_outcome *o, const pgr_wire_msg *m);

#endif
