/* Backends by the dialect they speak, and the one translation of a call
 * that may need it (dialect.h). */
#include "sluice/dialect.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/errors.h"

int dl_route(const struct cfg_backend *be, enum api_endpoint e)
{
    bool anthropic = be->type == BACKEND_ANTHROPIC;
    if (anthropic == (api_endpoint_dialect(e) != 0))
        return XL_NONE;
    if (e == API_MESSAGES)
        return XL_MESSAGES_TO_CHAT;
    if (e == API_CHAT)
        return XL_CHAT_TO_MESSAGES;
    return -1;
}

bool dl_serves(const struct config *cfg, enum api_endpoint e, const char *model, size_t len,
               bool translated)
{
    for (int i = 0; i < cfg->nbackends; i++) {
        int route = dl_route(&cfg->backends[i], e);
        if ((route == XL_NONE || (translated && route > XL_NONE)) &&
            cfg_models_match(&cfg->backends[i].models, model, len))
            return true;
    }
    return false;
}

/* Whether a backend of the other dialect serves the model or a fallback. */
static bool other_serves(const struct config *cfg, const struct api_call *call)
{
    const struct cfg_model *m = cfg->nmodels ? cfg_find_model(cfg, call->model) : NULL;
    const char *up = cfg_upstream_name(cfg, call->model);
    for (int i = 0; i < cfg->nbackends; i++) {
        if (dl_route(&cfg->backends[i], call->endpoint) <= XL_NONE)
            continue;
        const struct cfg_models *models = &cfg->backends[i].models;
        if (models->any)
            return true;
        if (cfg_models_match(models, up, strlen(up)))
            return true;
        for (int f = 0; m && f < m->fallbacks.n; f++) {
            const char *fu = cfg_upstream_name(cfg, m->fallbacks.names[f]);
            if (cfg_models_match(models, fu, strlen(fu)))
                return true;
        }
    }
    return false;
}

int dl_prepare(const struct config *cfg, const struct api_call *call, struct sl_str body,
               struct sl_buf *out, char *msg, size_t msglen, const char **param)
{
    bool other_kind = call->endpoint == API_MESSAGES ? cfg->any_openai : cfg->any_anthropic;
    if (!other_kind || !call->model || call->body != API_BODY_JSON ||
        (call->endpoint != API_CHAT && call->endpoint != API_MESSAGES) || !other_serves(cfg, call))
        return 0;
    enum xl_dir d = call->endpoint == API_MESSAGES ? XL_MESSAGES_TO_CHAT : XL_CHAT_TO_MESSAGES;
    cJSON *parsed = call->root ? NULL : cJSON_ParseWithLength(body.p, body.len);
    const cJSON *root = call->root ? call->root : parsed;
    int e = ERR_BAD_REQUEST;
    if (root)
        e = xl_request(d, root, out, msg, msglen, param);
    else
        snprintf(msg, msglen, "The request body could not be read for translation.");
    cJSON_Delete(parsed);
    if (!e)
        return 0;
    out->len = 0;
    const char *up = cfg_upstream_name(cfg, call->model);
    return dl_serves(cfg, call->endpoint, up, strlen(up), false) ? 0 : e;
}
