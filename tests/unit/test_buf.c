/* Tests for gateway/core/buf.c: bounds, escaping, consume/compact. */
#include "core/buf.h"
#include "check.h"

int main(void)
{
    struct gw_buf b;
    gw_buf_init(&b, 16);
    CHECK(gw_buf_append_str(&b, "0123456789") == 0);
    CHECK(gw_buf_size(&b) == 10);
    CHECK(gw_buf_append_str(&b, "0123456") == GW_ELIMIT); /* 17 > 16 */
    CHECK(gw_buf_size(&b) == 10);                         /* nothing half-written */
    CHECK(gw_buf_append_str(&b, "012345") == 0);          /* exactly 16 */
    CHECK(gw_buf_append(&b, "x", 1) == GW_ELIMIT);
    gw_buf_consume(&b, 10);
    CHECK_STR(gw_buf_ptr(&b), "012345");
    CHECK(gw_buf_append_str(&b, "abcdefghij") == 0); /* room again after consume */
    CHECK_STR(gw_buf_ptr(&b), "012345abcdefghij");
    gw_buf_consume(&b, 100);
    CHECK(gw_buf_size(&b) == 0);
    gw_buf_cleanup(&b);

    gw_buf_init(&b, 1024);
    CHECK(gw_buf_append_xml_escaped(&b, "a<b>&\"'c", 8) == 0);
    CHECK_STR(gw_buf_ptr(&b), "a&lt;b&gt;&amp;&quot;&apos;c");
    gw_buf_reset(&b);
    CHECK(gw_buf_printf(&b, "%s=%d", "n", 42) == 0);
    CHECK_STR(gw_buf_ptr(&b), "n=42");
    gw_buf_cleanup(&b);

    gw_buf_init(&b, 4);
    CHECK(gw_buf_printf(&b, "%s", "12345") == GW_ELIMIT);
    gw_buf_cleanup(&b);
    return CHECK_SUMMARY();
}
