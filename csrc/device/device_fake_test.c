/* Test hooks: a producer stream of the fake device backend (ringred.testing.FakeStream),
 * to play "the array's content is written by a kernel queued behind other work". */
#include "device/device_fake.h"
#include "ringred.h"

static rr_status status_of(int code)
{
    switch (code) {
    case 0: return RR_OK;
    case RR_FAKE_ERR_VALUE: return RR_ERR_INVALID;
    case RR_FAKE_ERR_NOMEM: return RR_ERR_NOMEM;
    default: return RR_ERR_SYSTEM;
    }
}

rr_status rr_test_fake_stream_create(uintptr_t *s)
{
    if (s == NULL)
        return RR_ERR_INVALID;
    return status_of(rr_dev_fake_backend()->stream_create(s));
}

rr_status rr_test_fake_stream_destroy(uintptr_t s)
{
    return status_of(rr_dev_fake_backend()->stream_destroy(s));
}

rr_status rr_test_fake_stream_sleep(uintptr_t s, double seconds)
{
    return status_of(rr_fake_stream_sleep(s, seconds));
}

rr_status rr_test_fake_stream_copy(uintptr_t s, uintptr_t dst, uintptr_t src, size_t bytes)
{
    return status_of(rr_fake_stream_write(s, dst, src, bytes));
}

rr_status rr_test_fake_stream_sync(uintptr_t s)
{
    return status_of(rr_dev_fake_backend()->stream_sync(s));
}
