/* test_filename.c -- the names of the database directory's files, and CURRENT (filename.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env.h"
#include "filename.h"
#include "testutil.h"

/* Every type of the table: its name, and the name read back as that type and number. */
static void test_round_trip(void)
{
    static const struct {
        enum file_type type;
        uint64_t number;
        const char *name;
    } cases[] = {
        {FILE_LOCK, 0, "LOCK"},
        {FILE_CURRENT, 0, "CURRENT"},
        {FILE_CURRENT_TMP, 0, "CURRENT.tmp"},
        {FILE_MANIFEST, 5, "MANIFEST-000005"},
        {FILE_MANIFEST, 12345678, "MANIFEST-12345678"},
        {FILE_WAL, 7, "000007.wal"},
        {FILE_TABLE, 123456, "123456.sst"},
        {FILE_TABLE_BAD, 3, "000003.sst.bad"},
        {FILE_WAL_BAD, 4, "000004.wal.bad"},
        {FILE_TEMP, 9, "000009.tmp"},
        {FILE_ARCHIVE, 0, "archive"},
        {FILE_CHECKPOINT, 0, "CHECKPOINT"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[FILE_NAME_MAX];
        file_base_name(name, cases[i].number, cases[i].type);
        CHECK(strcmp(name, cases[i].name) == 0);
        uint64_t n = 99;
        enum file_type t = FILE_LOCK;
        CHECK_EQ(parse_file_name(cases[i].name, &n, &t), 1);
        CHECK_EQ(t, cases[i].type);
        CHECK_EQ(n, cases[i].number);
    }
    char *p = db_file_name("/d", 42, FILE_WAL);
    CHECK(p && strcmp(p, "/d/000042.wal") == 0);
    free(p);
    p = db_file_name("/d", 0, FILE_LOCK);
    CHECK(p && strcmp(p, "/d/LOCK") == 0);
    free(p);
    char big[FILE_NAME_MAX];
    file_base_name(big, UINT64_MAX, FILE_MANIFEST);
    CHECK(strcmp(big, "MANIFEST-18446744073709551615") == 0);
}

static void test_parse(void)
{
    uint64_t n;
    enum file_type t;
    /* Any run of digits is a number (no padding needed), as far as it fits. */
    CHECK(parse_file_name("1.sst", &n, &t) && t == FILE_TABLE && n == 1);
    CHECK(parse_file_name("0000000000000000000000000000042.wal", &n, &t) && t == FILE_WAL && n == 42);
    CHECK(parse_file_name("1844674407370955160.sst", &n, &t) && n == UINT64_C(1844674407370955160));
    CHECK_EQ(parse_file_name("18446744073709551615.sst", &n, &t), 0);
    /* Not ours. */
    const char *foreign[] = {"", ".sst", "x.sst", "1x.sst", "1.SST", "1.sst.tmp", "1.tmp.bad", "1.bad",
                             "1.2.sst", "000001", "LOCK.tmp", "current", "CURRENT.bak", "archives",
                             "-1.wal", " 1.wal", "1 .wal"};
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
        n = 99;
        CHECK_EQ(parse_file_name(foreign[i], &n, &t), 0);
        CHECK_EQ(n, 99);
    }
    /* Every name beginning MANIFEST- is a manifest; only digits make its number. */
    CHECK(parse_file_name("MANIFEST-", &n, &t) && t == FILE_MANIFEST && n == 0);
    CHECK(parse_file_name("MANIFEST-000007.old", &n, &t) && t == FILE_MANIFEST && n == 0);
    CHECK(parse_file_name("MANIFEST-7", &n, &t) && t == FILE_MANIFEST && n == 7);
}

static void test_leading_number(void)
{
    uint64_t n = 0;
    CHECK(leading_file_number("000012.sst", &n) && n == 12);
    CHECK(leading_file_number("000013.sst.bad", &n) && n == 13);
    CHECK(leading_file_number("14.anything", &n) && n == 14);
    CHECK(leading_file_number("MANIFEST-000015", &n) && n == 15);
    CHECK(leading_file_number("MANIFEST-16.old", &n) && n == 16);
    n = 99;
    CHECK_EQ(leading_file_number("000017", &n), 0); /* a number alone is not a file's */
    CHECK_EQ(leading_file_number("MANIFEST-", &n), 0);
    CHECK_EQ(leading_file_number("LOCK", &n), 0);
    CHECK_EQ(leading_file_number(".sst", &n), 0);
    CHECK_EQ(leading_file_number("99999999999999999999.sst", &n), 0);
    CHECK_EQ(n, 99);
}

static void touch(const char *dir, const char *name)
{
    CHECK_RC(env_write_file(tu_path(dir, name), "", 0), PL_OK);
}

static void test_listing(const char *dir)
{
    CHECK_RC(env_mkdir(dir), PL_OK);
    touch(dir, "000009.wal");
    touch(dir, "000003.wal");
    touch(dir, "000012.sst");
    touch(dir, "000020.sst.bad");
    touch(dir, "000030.tmp");
    touch(dir, "MANIFEST-000040");
    touch(dir, "7.wal.bad");
    file_list l = {0};
    CHECK_RC(list_wals(dir, &l), PL_OK);
    CHECK_RC(list_wals(dir, &l), PL_OK); /* twice: repeats */
    file_list_sort(&l);
    CHECK_EQ(l.n, 2);
    CHECK(l.n == 2 && l.numbers[0] == 3 && l.numbers[1] == 9);
    CHECK_EQ(l.max_number, 12); /* WALs and tables only */
    file_list_free(&l);
    CHECK(l.numbers == NULL && l.n == 0);
    int count = -1;
    CHECK_RC(count_data_files(dir, &count), PL_OK);
    CHECK_EQ(count, 3);
    tu_rm_rf(dir);
}

static void test_current(const char *dir)
{
    CHECK_RC(env_mkdir(dir), PL_OK);
    uint64_t n = 0;
    CHECK_RC(read_current(dir, &n), PL_IOERR); /* none yet */
    CHECK_EQ(current_names(dir, 5), 0);
    int renamed = 0;
    CHECK_RC(set_current(dir, 5, &renamed), PL_OK);
    CHECK_EQ(renamed, 1);
    char *data = NULL;
    size_t len = 0;
    CHECK_RC(env_read_file(tu_path(dir, "CURRENT"), &data, &len), PL_OK);
    CHECK(len == 16 && memcmp(data, "MANIFEST-000005\n", 16) == 0);
    free(data);
    struct stat st;
    CHECK(stat(tu_path(dir, "CURRENT.tmp"), &st) != 0);
    CHECK_RC(read_current(dir, &n), PL_OK);
    CHECK_EQ(n, 5);
    CHECK_EQ(current_names(dir, 5), 1);
    CHECK_EQ(current_names(dir, 6), 0);
    /* An unpadded name reads, but is not the name set_current writes. */
    CHECK_RC(env_write_file(tu_path(dir, "CURRENT"), "MANIFEST-9\n", 11), PL_OK);
    CHECK_RC(read_current(dir, &n), PL_OK);
    CHECK_EQ(n, 9);
    CHECK_EQ(current_names(dir, 9), 0);
    /* Damage is corruption naming the file and the offset. */
    CHECK_RC(env_write_file(tu_path(dir, "CURRENT"), "MANIFEST-00x5\n", 14), PL_OK);
    CHECK_RC(read_current(dir, &n), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "/CURRENT: bad manifest number at offset 11") != NULL);
    CHECK_RC(env_write_file(tu_path(dir, "CURRENT"), "MANIFEST-000005", 15), PL_OK);
    CHECK_RC(read_current(dir, &n), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "/CURRENT: not a manifest name at offset 0") != NULL);
    tu_rm_rf(dir);
}

int main(void)
{
    char base[128], dir[160];
    snprintf(base, sizeof base, "/tmp/pylsm-test-filename-%d", (int)getpid());
    tu_rm_rf(base);
    mkdir(base, 0755);
    test_round_trip();
    test_parse();
    test_leading_number();
    snprintf(dir, sizeof dir, "%s/list", base);
    test_listing(dir);
    snprintf(dir, sizeof dir, "%s/current", base);
    test_current(dir);
    tu_rm_rf(base);
    return test_report();
}
