/* The strict JSON cursor: what it takes, what it leaves to cJSON (false),
 * and that everything it takes cJSON reads the same. */
#include <cjson/cJSON.h>

#include "check.h"
#include "sluice/json_scan.h"

static struct json_scan at(const char *text)
{
    return (struct json_scan){ text, text + strlen(text) };
}

static bool skips(const char *text)
{
    struct json_scan s = at(text);
    return js_skip_value(&s, 0) && js_at_end(&s);
}

int main(void)
{
    struct json_scan s = at("  {\"a\" : \"x\\u00e9\\n\", \"n\": -0, \"t\": true}");
    struct sl_str raw;
    bool escaped;
    char lit, out[16];
    int64_t n;
    CHECK(js_peek(&s) == '{' && js_take(&s, '{'));
    CHECK(js_string(&s, &raw, &escaped) && !escaped && raw.len == 1 && raw.p[0] == 'a');
    CHECK(js_take(&s, ':') && js_string(&s, &raw, &escaped) && escaped);
    CHECK(js_unescape(raw, out) == 4 && memcmp(out, "x\xc3\xa9\n", 4) == 0);
    CHECK(js_take(&s, ',') && js_string(&s, &raw, &escaped) && js_take(&s, ':'));
    CHECK(js_integer(&s, &n) && n == 0);
    CHECK(js_take(&s, ',') && js_string(&s, &raw, &escaped) && js_take(&s, ':'));
    CHECK(js_literal(&s, &lit) && lit == 't' && js_take(&s, '}') && js_at_end(&s));

    /* the subset: what it leaves to cJSON */
    s = at("1.5");
    CHECK(!js_integer(&s, &n));
    s = at("1234567890123456"); /* 16 digits: past what a double holds exactly */
    CHECK(!js_integer(&s, &n));
    s = at("\"a\\u0000b\"");
    CHECK(!js_string(&s, &raw, &escaped));
    s = at("\"\\ud800\"");     /* a lone surrogate */
    CHECK(!js_string(&s, &raw, &escaped));
    s = at("\"tab\there\"");   /* a control byte */
    CHECK(!js_string(&s, &raw, &escaped));
    CHECK(!skips("[1,]") && !skips("{\"a\"}") && !skips("01") && !skips("tru"));
    char deep[2 * JS_DEPTH_MAX + 8] = { 0 };
    memset(deep, '[', JS_DEPTH_MAX + 1); /* values nested up to depth JS_DEPTH_MAX: taken */
    memset(deep + JS_DEPTH_MAX + 1, ']', JS_DEPTH_MAX + 1);
    CHECK(skips(deep));
    memset(deep, '[', JS_DEPTH_MAX + 2); /* one deeper: left to cJSON */
    memset(deep + JS_DEPTH_MAX + 2, ']', JS_DEPTH_MAX + 2);
    CHECK(!skips(deep));

    /* whatever it takes, cJSON takes too */
    const char *ok[] = { "{\"a\":[1,2,{\"b\":null}],\"c\":\"\\\"\\\\\\/\"}", "-1e-7", "[]", "{}",
                         "\"\\ud83d\\ude00\"", "[true,false,null, 0.25 ,-3E+2]" };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        CHECK(skips(ok[i]));
        cJSON *j = cJSON_Parse(ok[i]);
        CHECK(j != NULL);
        cJSON_Delete(j);
    }
    return check_done();
}
