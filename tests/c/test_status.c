/* test_status.c -- the thread's last failure, and keeping it aside across clean-up (status.h). */
#include <errno.h>
#include <string.h>

#include "status.h"
#include "testutil.h"

static void test_fail(void)
{
    CHECK_RC(PL_FAIL(PL_CORRUPT, "%s: bad at offset %d", "f", 7), PL_CORRUPT);
    CHECK(strcmp(pl_errmsg(), "f: bad at offset 7") == 0);
    CHECK_EQ(pl_errno(), 0);
    CHECK_RC(PL_IOFAIL(ENOSPC, "write %s", "f"), PL_IOERR);
    CHECK(strcmp(pl_errmsg(), "write f: No space left on device") == 0);
    CHECK_EQ(pl_errno(), ENOSPC);
    pl_clear_error();
    CHECK(strcmp(pl_errmsg(), "") == 0);
    CHECK_EQ(pl_errno(), 0);
}

/* A failure kept aside comes back as it was (errno's text not doubled), whatever failed between. */
static void test_save_restore(void)
{
    PL_IOFAIL(ENOSPC, "write %s", "a");
    pl_error_state saved;
    pl_error_save(&saved);
    PL_IOFAIL(EACCES, "unlink %s", "b");
    CHECK_RC(pl_error_restore(&saved, PL_IOERR), PL_IOERR);
    CHECK(strcmp(pl_errmsg(), "write a: No space left on device") == 0);
    CHECK_EQ(pl_errno(), ENOSPC);

    PL_FAIL(PL_CORRUPT, "c: checksum mismatch");
    pl_error_save(&saved);
    PL_IOFAIL(EIO, "d");
    pl_error_restore(&saved, PL_OK);
    CHECK(strcmp(pl_errmsg(), "c: checksum mismatch") == 0);
    CHECK_EQ(pl_errno(), 0);

    /* A message cut at PL_ERRMSG_MAX keeps its errno too. */
    char big[PL_ERRMSG_MAX + 100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    PL_IOFAIL(ENOSPC, "%s", big);
    pl_error_save(&saved);
    pl_clear_error();
    pl_error_restore(&saved, PL_IOERR);
    CHECK_EQ(strlen(pl_errmsg()), PL_ERRMSG_MAX - 1);
    CHECK_EQ(pl_errno(), ENOSPC);
}

int main(void)
{
    test_fail();
    test_save_restore();
    return test_report();
}
