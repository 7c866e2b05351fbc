/* The spans of a finished request (spans.h). */
#include "sluice/spans.h"

#include <stdio.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/telemetry.h"
#include "sluice/util.h"

/* The GenAI operation of an API path (OpenTelemetry's gen_ai.operation.name), or NULL. */
static const char *genai_operation(const char *path)
{
    static const struct {
        const char *path, *op;
    } ops[] = { { "/v1/chat/completions", "chat" }, { "/v1/responses", "chat" },
                { "/v1/completions", "text_completion" }, { "/v1/embeddings", "embeddings" } };
    for (size_t i = 0; i < SL_ARRAY_LEN(ops); i++)
        if (strcmp(path, ops[i].path) == 0)
            return ops[i].op;
    return NULL;
}

#define ATTR_S(k, v) ((struct tel_attr){ .key = (k), .type = TEL_STR, .s = (v) })
#define ATTR_I(k, v) ((struct tel_attr){ .key = (k), .type = TEL_INT, .i = (int64_t)(v) })

/* The server span's attributes: the GenAI ones, then sluice's own. */
static int root_attrs(const struct span_request *r, const char *op, struct tel_attr *root)
{
    int n = 0;
    root[n++] = ATTR_S("gen_ai.operation.name", op ? op : "other");
    root[n++] = ATTR_S("gen_ai.provider.name", "openai");
    root[n++] = ATTR_S("gen_ai.system", "openai");
    if (r->model)
        root[n++] = ATTR_S("gen_ai.request.model", r->model);
    if (r->served_model)
        root[n++] = ATTR_S("gen_ai.response.model", r->served_model);
    if (r->usage_seen) {
        root[n++] = ATTR_I("gen_ai.usage.input_tokens", r->input_tokens);
        root[n++] = ATTR_I("gen_ai.usage.output_tokens", r->output_tokens);
    }
    root[n++] = ATTR_S("http.request.method", r->method);
    root[n++] = ATTR_S("url.path", r->path);
    root[n++] = ATTR_I("http.response.status_code", r->status);
    root[n++] = ATTR_S("sluice.key", r->key);
    if (r->team)
        root[n++] = ATTR_S("sluice.team", r->team);
    if (r->user)
        root[n++] = ATTR_S("user.id", r->user);
    if (r->backend)
        root[n++] = ATTR_S("sluice.backend", r->backend);
    root[n++] = ATTR_I("sluice.attempts", r->attempts);
    root[n++] = ATTR_S("sluice.end", r->end);
    root[n++] = (struct tel_attr){ .key = "sluice.cost_usd", .type = TEL_DOUBLE,
                                   .d = (double)r->cost / 1e6 };
    root[n++] = (struct tel_attr){ .key = "sluice.stream", .type = TEL_BOOL, .i = r->stream };
    return n;
}

void spans_export(struct tel_exporter *e, const struct span_request *r)
{
    const struct config *cfg = r->cfg;
    if (!cfg->telemetry.enabled || !r->trace->sampled)
        return;
    int64_t to_wall = sl_wall_us() - sl_now_us(); /* monotonic -> wall clock */
    const char *op = genai_operation(r->path);
    char name[300];
    if (op && r->model)
        snprintf(name, sizeof(name), "%s %.64s", op, r->model);
    else
        snprintf(name, sizeof(name), "%.8s %.255s", r->method, r->path);
    struct tel_attr root[20];
    int n = root_attrs(r, op, root);
    struct tel_span spans[2 + SPANS_MAX_ATTEMPTS];
    int ns = 0;
    const uint8_t *parent = r->trace->has_parent ? r->trace->parent_id : NULL;
    spans[ns++] = (struct tel_span){ .name = name, .kind = TEL_SERVER, .span_id = r->trace->span_id,
                                     .parent_id = parent, .start_us = r->start_us + to_wall,
                                     .end_us = sl_now_us() + to_wall, .error = r->status >= 500,
                                     .attrs = root, .nattrs = n };
    uint8_t limiter_id[8];
    struct tel_attr lim[4];
    int nl = 0;
    if (r->admit_end_us) {
        static const char *const where[] = { "none", "local", "redis" };
        tel_new_span_id(limiter_id);
        lim[nl++] = ATTR_S("sluice.limiter", where[r->ticket->where]);
        lim[nl++] = (struct tel_attr){ .key = "sluice.admitted", .type = TEL_BOOL,
                                       .i = r->ticket->admitted };
        if (!r->ticket->admitted || r->ticket->dim)
            lim[nl++] = ATTR_S("sluice.rate_limited.dimension",
                               lim_dim_info(r->ticket->dim)->label);
        lim[nl++] = ATTR_I("sluice.queued_ms", r->queued_ms);
        spans[ns++] = (struct tel_span){ .name = "sluice.limiter", .kind = TEL_INTERNAL,
                                         .span_id = limiter_id, .parent_id = r->trace->span_id,
                                         .start_us = r->admit_start_us + to_wall,
                                         .end_us = r->admit_end_us + to_wall,
                                         .error = r->ticket->unavailable, .attrs = lim,
                                         .nattrs = nl };
    }
    char names[SPANS_MAX_ATTEMPTS][80];
    struct tel_attr at[SPANS_MAX_ATTEMPTS][4];
    for (int i = 0; i < r->ntraced && i < SPANS_MAX_ATTEMPTS; i++) {
        const struct span_attempt *ta = &r->traced[i];
        const char *backend = cfg->backends[ta->backend].name;
        snprintf(names[i], sizeof(names[i]), "upstream %s", backend);
        int k = 0;
        at[i][k++] = ATTR_S("sluice.backend", backend);
        at[i][k++] = ATTR_I("sluice.attempt", i + 1);
        at[i][k++] = ATTR_S("sluice.outcome", up_outcome_info(ta->outcome)->label);
        if (ta->status)
            at[i][k++] = ATTR_I("http.response.status_code", ta->status);
        spans[ns++] = (struct tel_span){ .name = names[i], .kind = TEL_CLIENT, .span_id = ta->span_id,
                                         .parent_id = r->trace->span_id,
                                         .start_us = ta->start_us + to_wall,
                                         .end_us = (ta->end_us ? ta->end_us : sl_now_us()) + to_wall,
                                         .error = ta->outcome != UP_OUTCOME_SUCCESS,
                                         .attrs = at[i], .nattrs = k };
    }
    tel_export(e, &cfg->telemetry, r->trace, spans, ns);
}
