/* json_set_member: replaces or inserts one member, leaves every other byte. */
#include "check.h"
#include "sluice/json_edit.h"

static void set(const char *in, const char *want)
{
    struct sl_buf out = { 0 };
    CHECK(json_set_member(in, strlen(in), "stream_options", "{\"include_usage\":true}", &out));
    CHECK_STR(out.data, want);
    sl_buf_free(&out);
}

int main(void)
{
    set("{\"model\":\"m\",\"stream\":true}",
        "{\"stream_options\":{\"include_usage\":true},\"model\":\"m\",\"stream\":true}");
    set("  {}  ", "  {\"stream_options\":{\"include_usage\":true}}  ");
    set("{\"model\":\"m\", \"stream_options\" : {\"include_usage\":false, \"x\":[1,{\"a\":\"}\"}]} ,\"n\":1}",
        "{\"model\":\"m\", \"stream_options\" : {\"include_usage\":true} ,\"n\":1}");
    set("{\"stream_options\":null}", "{\"stream_options\":{\"include_usage\":true}}");
    set("{\"a\":\"stream_options\",\"b\":\"q\\\"stream_options\\\"\"}",
        "{\"stream_options\":{\"include_usage\":true},\"a\":\"stream_options\",\"b\":\"q\\\"stream_options\\\"\"}");
    set("{\"stream_options\":1,\"stream_options\":2}",
        "{\"stream_options\":{\"include_usage\":true},\"stream_options\":{\"include_usage\":true}}");
    struct sl_buf out = { 0 };
    CHECK(!json_set_member("[1]", 3, "x", "1", &out));
    sl_buf_free(&out);
    return check_done();
}
