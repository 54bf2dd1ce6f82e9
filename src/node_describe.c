/* A node's description: who it is, where it listens, what it hosts, whom it
 * knows, and its counters. */
#include <stdlib.h>

#include "internal.h"

static void describe_counters(const shoal_node_counters_t *c, cJSON *out)
{
    cJSON_AddNumberToObject(out, "msgs_in", (double)c->msgs_in);
    cJSON_AddNumberToObject(out, "msgs_out", (double)c->msgs_out);
    cJSON_AddNumberToObject(out, "calls_served", (double)c->calls_served);
    cJSON_AddNumberToObject(out, "calls_failed", (double)c->calls_failed);
    cJSON_AddNumberToObject(out, "calls_made", (double)c->calls_made);
    cJSON_AddNumberToObject(out, "tells_in", (double)c->tells_in);
    cJSON_AddNumberToObject(out, "events_in", (double)c->events_in);
    cJSON_AddNumberToObject(out, "errors", (double)c->errors);
    cJSON_AddNumberToObject(out, "conns_accepted", (double)c->conns_accepted);
    cJSON_AddNumberToObject(out, "replies_dropped",
                            (double)c->replies_dropped);
}

/* Peers that said their name: what gossip will spread later. */
static void describe_peers(shoal_node_t *node, cJSON *nodes, size_t *conns)
{
    shoal__list_t *pos;

    *conns = 0;
    for (pos = node->priv->conns.next; pos != &node->priv->conns;
         pos = pos->next) {
        shoal_conn_t *conn = SHOAL__CONTAINER(pos, shoal_conn_t, node_link);
        cJSON *peer;

        (*conns)++;
        if (!conn->peer_named)
            continue;
        peer = cJSON_CreateObject();
        cJSON_AddStringToObject(peer, "name", conn->peer_name);
        cJSON_AddStringToObject(peer, "address",
                                conn->peer_listen[0] ? conn->peer_listen
                                                     : conn->address);
        cJSON_AddStringToObject(peer, "direction",
                                conn->outbound ? "out" : "in");
        cJSON_AddItemToArray(nodes, peer);
    }
}

cJSON *shoal_node_describe(shoal_node_t *node)
{
    shoal__node_priv_t *priv = node->priv;
    cJSON *desc = cJSON_CreateObject();
    cJSON *addresses, *apps, *nodes, *counters, *load;
    size_t rss = 0, conns = 0, in_flight = 0;
    shoal__list_t *pos;

    if (desc == NULL)
        return NULL;
    cJSON_AddStringToObject(desc, "name", priv->name);
    if (priv->n_listeners > 0)
        cJSON_AddStringToObject(desc, "address", priv->listeners[0]->url);
    else
        cJSON_AddNullToObject(desc, "address");
    addresses = cJSON_AddArrayToObject(desc, "addresses");
    for (size_t i = 0; i < priv->n_listeners; i++)
        cJSON_AddItemToArray(addresses,
                             cJSON_CreateString(priv->listeners[i]->url));
    cJSON_AddNumberToObject(desc, "pid", (double)uv_os_getpid());
    apps = cJSON_AddArrayToObject(desc, "applications");
    shoal__app_describe(node, apps);
    nodes = cJSON_AddArrayToObject(desc, "nodes");
    describe_peers(node, nodes, &conns);
    counters = cJSON_AddObjectToObject(desc, "counters");
    describe_counters(&priv->counters, counters);
    for (pos = priv->apps.next; pos != &priv->apps; pos = pos->next)
        in_flight += SHOAL__CONTAINER(pos, shoal__app_t, link)->in_flight;
    load = cJSON_AddObjectToObject(desc, "load");
    cJSON_AddNumberToObject(load, "calls_in_flight", (double)in_flight);
    cJSON_AddNumberToObject(load, "connections", (double)conns);
    cJSON_AddNumberToObject(load, "uptime_ms",
                            (double)(uv_now(node->loop) - priv->started_ms));
    if (uv_resident_set_memory(&rss) == 0)
        cJSON_AddNumberToObject(load, "rss_bytes", (double)rss);
    SHOAL__HOOKS(node, on_describe, desc);
    return desc;
}
