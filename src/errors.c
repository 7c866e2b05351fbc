/* The catalogue of sluice's own errors and the one function that renders them
 * in OpenAI's JSON shape, so SDKs parse them like the real API's. */
#include "sluice/errors.h"

#include <string.h>

#include "sluice/util.h"

static const struct sl_error_info table[ERR__COUNT] = {
    [ERR_BAD_REQUEST] = { 400, "invalid_request_error", "invalid_request_error" },
    [ERR_BAD_HTTP] = { 400, "invalid_request_error", "bad_request" },
    [ERR_INVALID_API_KEY] = { 401, "invalid_request_error", "invalid_api_key" },
    [ERR_MODEL_NOT_ALLOWED] = { 403, "invalid_request_error", "model_not_allowed" },
    [ERR_PERMISSION] = { 403, "invalid_request_error", "permission_denied" },
    [ERR_QUOTA_EXHAUSTED] = { 429, "insufficient_quota", "insufficient_quota" },
    [ERR_NOT_FOUND] = { 404, "invalid_request_error", "unknown_url" },
    [ERR_MODEL_NOT_FOUND] = { 404, "invalid_request_error", "model_not_found" },
    [ERR_RESOURCE_NOT_FOUND] = { 404, "invalid_request_error", "not_found" },
    [ERR_METHOD] = { 405, "invalid_request_error", "method_not_allowed" },
    [ERR_REQUEST_TIMEOUT] = { 408, "invalid_request_error", "request_timeout" },
    [ERR_BODY_TOO_LARGE] = { 413, "invalid_request_error", "request_too_large" },
    [ERR_HEAD_TOO_LARGE] = { 413, "invalid_request_error", "headers_too_large" },
    [ERR_PROMPT_TOO_LARGE] = { 413, "invalid_request_error", "prompt_too_large" },
    [ERR_UNSUPPORTED_MEDIA] = { 415, "invalid_request_error", "unsupported_media_type" },
    [ERR_EXPECTATION] = { 417, "invalid_request_error", "expectation_failed" },
    [ERR_CONFLICT] = { 409, "invalid_request_error", "conflict" },
    [ERR_MISDIRECTED] = { 421, "invalid_request_error", "misdirected_request" },
    [ERR_RATE_LIMITED] = { 429, "requests", "rate_limit_exceeded" },
    [ERR_RATE_LIMITED_TOKENS] = { 429, "tokens", "rate_limit_exceeded" },
    [ERR_RATE_LIMITED_CONCURRENCY] = { 429, "concurrency", "rate_limit_exceeded" },
    [ERR_UPSTREAM_RATE_LIMITED] = { 429, "upstream", "upstream_rate_limited" },
    [ERR_UPSTREAM_CAPACITY] = { 429, "upstream", "upstream_capacity" },
    [ERR_INTERNAL] = { 500, "server_error", "internal_error" },
    [ERR_NOT_IMPLEMENTED] = { 501, "invalid_request_error", "not_implemented" },
    [ERR_UPSTREAM_FAILED] = { 502, "server_error", "upstream_failed" },
    [ERR_UPSTREAM_AUTH] = { 502, "server_error", "upstream_auth_error" },
    [ERR_NO_BACKEND] = { 503, "server_error", "no_backend_available" },
    [ERR_SHUTTING_DOWN] = { 503, "server_error", "shutting_down" },
    [ERR_LIMITER_DOWN] = { 503, "server_error", "rate_limiter_unavailable" },
    [ERR_KEYS_BUSY] = { 503, "server_error", "key_lookups_busy" },
    [ERR_KEY_STORE] = { 503, "server_error", "key_store_unavailable" },
    [ERR_OVERLOADED] = { 503, "server_error", "overloaded" },
    [ERR_UPSTREAM_TIMEOUT] = { 504, "server_error", "upstream_timeout" },
    [ERR_HTTP_VERSION] = { 505, "invalid_request_error", "http_version_not_supported" },
};

const struct sl_error_info *err_info(enum sl_error e)
{
    return &table[e];
}

char *err_json(enum sl_error e, const char *message, const char *param, size_t *len_out)
{
    const struct sl_error_info *info = &table[e];
    struct sl_buf b = { 0 };
    sl_buf_appends(&b, "{\"error\":{\"message\":");
    sl_buf_json_string(&b, message, strlen(message));
    sl_buf_appends(&b, ",\"type\":");
    sl_buf_json_string(&b, info->type, strlen(info->type));
    sl_buf_appends(&b, ",\"param\":");
    if (param)
        sl_buf_json_string(&b, param, strlen(param));
    else
        sl_buf_appends(&b, "null");
    sl_buf_appends(&b, ",\"code\":");
    if (info->code)
        sl_buf_json_string(&b, info->code, strlen(info->code));
    else
        sl_buf_appends(&b, "null");
    sl_buf_appends(&b, "}}\n");
    *len_out = b.len;
    return b.data;
}

char *err_response_event_json(enum sl_error e, const char *message, int64_t sequence,
                              size_t *len_out)
{
    const struct sl_error_info *info = &table[e];
    const char *code = info->code ? info->code : info->type;
    struct sl_buf b = { 0 };
    /* The documented members at the top, and the error object OpenAI's own
     * streams send (and the Vercel AI SDK and openai-node read) as well. */
    for (int nested = 0; nested < 2; nested++) {
        sl_buf_appends(&b, nested ? ",\"error\":{\"type\":" : "{\"type\":\"error\",\"code\":");
        if (nested) {
            sl_buf_json_string(&b, info->type, strlen(info->type));
            sl_buf_appends(&b, ",\"code\":");
        }
        sl_buf_json_string(&b, code, strlen(code));
        sl_buf_appends(&b, ",\"message\":");
        sl_buf_json_string(&b, message, strlen(message));
        sl_buf_appends(&b, ",\"param\":null");
        if (!nested)
            sl_buf_printf(&b, ",\"sequence_number\":%lld", (long long)sequence);
    }
    sl_buf_appends(&b, "}}");
    *len_out = b.len;
    return b.data;
}

int err_status(enum sl_error e, enum sl_dialect d)
{
    int status = table[e].status;
    return d == DIALECT_ANTHROPIC && status == 503 ? 529 : status;
}

const char *err_anthropic_type(enum sl_error e)
{
    return err_anthropic_type_of(table[e].status);
}

const char *err_anthropic_type_of(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 503:
        return "overloaded_error";
    case 504:
        return "timeout_error";
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

char *err_json_in(enum sl_dialect d, enum sl_error e, const char *message, const char *param,
                  size_t *len_out)
{
    if (d != DIALECT_ANTHROPIC)
        return err_json(e, message, param, len_out);
    const char *type = err_anthropic_type(e);
    struct sl_buf b = { 0 };
    sl_buf_appends(&b, "{\"type\":\"error\",\"error\":{\"type\":");
    sl_buf_json_string(&b, type, strlen(type));
    sl_buf_appends(&b, ",\"message\":");
    sl_buf_json_string(&b, message, strlen(message));
    sl_buf_appends(&b, "}}\n");
    *len_out = b.len;
    return b.data;
}
