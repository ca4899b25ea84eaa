/* filename.c -- the names of the database directory's files; see filename.h and docs/format.md. */
#include "filename.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "env.h"
#include "status.h"

#define MANIFEST_PREFIX "MANIFEST-"
#define MANIFEST_PREFIX_LEN 9

/* The table of filename.h: each type's name, as it is (FIXED), after its number (NUMBER_FIRST:
 * NNNNNN.<text>) or before it (NUMBER_LAST: <text>NNNNNN). */
enum form { FIXED, NUMBER_FIRST, NUMBER_LAST };
static const struct {
    enum file_type type;
    enum form form;
    const char *text;
} names[] = {
    {FILE_LOCK, FIXED, "LOCK"},
    {FILE_CURRENT, FIXED, "CURRENT"},
    {FILE_CURRENT_TMP, FIXED, "CURRENT.tmp"},
    {FILE_MANIFEST, NUMBER_LAST, MANIFEST_PREFIX},
    {FILE_WAL, NUMBER_FIRST, "wal"},
    {FILE_TABLE, NUMBER_FIRST, "sst"},
    {FILE_TABLE_BAD, NUMBER_FIRST, "sst.bad"},
    {FILE_WAL_BAD, NUMBER_FIRST, "wal.bad"},
    {FILE_TEMP, NUMBER_FIRST, "tmp"},
    {FILE_ARCHIVE, FIXED, "archive"},
    {FILE_CHECKPOINT, FIXED, "CHECKPOINT"},
};

#define NNAMES (sizeof names / sizeof names[0])

/* ---- names ---- */

void file_base_name(char buf[FILE_NAME_MAX], uint64_t number, enum file_type type)
{
    buf[0] = 0; /* (not a type of the table) */
    for (size_t i = 0; i < NNAMES; i++) {
        if (names[i].type != type)
            continue;
        if (names[i].form == FIXED)
            snprintf(buf, FILE_NAME_MAX, "%s", names[i].text);
        else if (names[i].form == NUMBER_FIRST)
            snprintf(buf, FILE_NAME_MAX, "%06" PRIu64 ".%s", number, names[i].text);
        else
            snprintf(buf, FILE_NAME_MAX, "%s%06" PRIu64, names[i].text, number);
        return;
    }
}

char *db_file_name(const char *dir, uint64_t number, enum file_type type)
{
    char name[FILE_NAME_MAX];
    file_base_name(name, number, type);
    return db_path_join(dir, name);
}

char *db_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- classification ---- */

/* The decimal number of [p, end): 1 with *out stored, 0 when it is empty, holds a non-digit or does
 * not fit. */
static int parse_number(const char *p, const char *end, uint64_t *out)
{
    if (p == end)
        return 0;
    uint64_t n = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || n > UINT64_MAX / 10 - 9)
            return 0;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    *out = n;
    return 1;
}

int parse_file_name(const char *name, uint64_t *number, enum file_type *type)
{
    const char *dot = strchr(name, '.');
    uint64_t n = 0;
    int numbered = dot && parse_number(name, dot, &n); /* NNNNNN.<anything> */
    for (size_t i = 0; i < NNAMES; i++) {
        const char *t = names[i].text;
        int match;
        if (names[i].form == FIXED) {
            match = strcmp(name, t) == 0;
        } else if (names[i].form == NUMBER_FIRST) {
            match = numbered && strcmp(dot + 1, t) == 0;
        } else { /* any name with the prefix: the number when only digits follow it, else 0 */
            size_t tl = strlen(t);
            match = strncmp(name, t, tl) == 0;
            if (match && !parse_number(name + tl, name + strlen(name), &n))
                n = 0;
        }
        if (match) {
            *number = names[i].form == FIXED ? 0 : n;
            *type = names[i].type;
            return 1;
        }
    }
    return 0;
}

int leading_file_number(const char *name, uint64_t *number)
{
    const char *p = name;
    if (strncmp(p, MANIFEST_PREFIX, MANIFEST_PREFIX_LEN) == 0)
        p += MANIFEST_PREFIX_LEN;
    uint64_t n = 0;
    const char *d = p;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > UINT64_MAX / 10 - 9)
            return 0;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (p == d || (d == name && *p != '.'))
        return 0;
    *number = n;
    return 1;
}

/* ---- listing ---- */

static int collect_wal(void *ctx, const char *name)
{
    file_list *l = ctx;
    uint64_t number;
    enum file_type type;
    if (!parse_file_name(name, &number, &type) || (type != FILE_WAL && type != FILE_TABLE))
        return PL_OK;
    if (number > l->max_number)
        l->max_number = number;
    if (type != FILE_WAL)
        return PL_OK;
    int rc = array_reserve(&l->numbers, &l->cap, l->n + 1, sizeof *l->numbers);
    if (!rc)
        l->numbers[l->n++] = number;
    return rc;
}

int list_wals(const char *dir, file_list *l) { return env_list_dir(dir, collect_wal, l); }

void file_list_sort(file_list *l)
{
    if (!l->n)
        return;
    qsort(l->numbers, l->n, sizeof *l->numbers, array_cmp_u64);
    size_t k = 1;
    for (size_t i = 1; i < l->n; i++)
        if (l->numbers[i] != l->numbers[k - 1])
            l->numbers[k++] = l->numbers[i];
    l->n = k;
}

void file_list_free(file_list *l)
{
    free(l->numbers);
    memset(l, 0, sizeof *l);
}

static int count_data_file(void *ctx, const char *name)
{
    uint64_t n;
    enum file_type type;
    if (parse_file_name(name, &n, &type) && (type == FILE_TABLE || type == FILE_WAL))
        (*(int *)ctx)++;
    return PL_OK;
}

int count_data_files(const char *dir, int *count)
{
    *count = 0;
    return env_list_dir(dir, count_data_file, count);
}

/* ---- CURRENT ---- */

int read_current(const char *dir, uint64_t *number)
{
    char *cur = db_file_name(dir, 0, FILE_CURRENT);
    char *data = NULL;
    size_t len = 0;
    int rc = cur ? env_read_file(cur, &data, &len) : PL_FAIL(PL_NOMEM, "out of memory");
    if (rc)
        goto out;
    if (len < 10 || len > 64 || strncmp(data, MANIFEST_PREFIX, MANIFEST_PREFIX_LEN) != 0 || data[len - 1] != '\n') {
        rc = PL_FAIL(PL_CORRUPT, "%s: not a manifest name at offset 0", cur);
        goto out;
    }
    uint64_t n = 0;
    for (size_t i = MANIFEST_PREFIX_LEN; i < len - 1; i++) {
        if (data[i] < '0' || data[i] > '9') {
            rc = PL_FAIL(PL_CORRUPT, "%s: bad manifest number at offset %zu", cur, i);
            goto out;
        }
        n = n * 10 + (uint64_t)(data[i] - '0');
    }
    *number = n;
out:
    free(cur);
    free(data);
    return rc;
}

/* CURRENT's contents naming MANIFEST-number, into body; its length. */
static size_t current_body(char body[FILE_NAME_MAX + 1], uint64_t number)
{
    file_base_name(body, number, FILE_MANIFEST);
    size_t n = strlen(body);
    body[n++] = '\n';
    body[n] = 0;
    return n;
}

int current_names(const char *dir, uint64_t number)
{
    char *cur = db_file_name(dir, 0, FILE_CURRENT), *data = NULL, want[FILE_NAME_MAX + 1];
    size_t len = 0, n = current_body(want, number);
    int yes = cur && env_read_file(cur, &data, &len) == PL_OK && len == n && memcmp(data, want, len) == 0;
    free(cur);
    free(data);
    return yes;
}

int set_current(const char *dir, uint64_t number, int *renamed)
{
    *renamed = 0;
    char *tmp = db_file_name(dir, 0, FILE_CURRENT_TMP), *cur = db_file_name(dir, 0, FILE_CURRENT);
    char body[FILE_NAME_MAX + 1];
    size_t n = current_body(body, number);
    int rc = tmp && cur ? env_write_file(tmp, body, n) : PL_FAIL(PL_NOMEM, "out of memory");
    if (!rc) {
        env_kill_point("current_rename");
        env_test_hook("current_rename");
        rc = env_rename(tmp, cur);
        *renamed = rc == PL_OK;
    }
    if (!rc)
        rc = env_sync_dir(dir);
    if (rc && tmp)
        env_unlink(tmp);
    free(tmp);
    free(cur);
    return rc;
}
