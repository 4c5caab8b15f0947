/* The admin port's request policy, with no sockets and no HTTP library: from what the HTTP server
 * read of one request (method, path, the query's limit, the Host headers, Authorization, whether a
 * body comes, its type and announced length) and the configuration (admin.token, admin.hosts),
 * the route or the refusal, and the refusals' answers (status, JSON body, extra header). admin.c
 * asks it about every request and answers as it says; the unit tests and the fuzz target call it
 * directly. Owns: nothing beyond the structs below. Calls: config, core (host rules); OpenSSL
 * (digest and constant-time compare only). */
#ifndef GW_ADMIN_ADMIN_PROTO_H
#define GW_ADMIN_ADMIN_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include "config/config.h"

/* What a request is answered with. */
enum gw_admin_route {
    GW_ADMIN_ROUTE_NONE = 0,    /* refused: see the refusal */
    GW_ADMIN_ROUTE_HEALTHZ,     /* /healthz */
    GW_ADMIN_ROUTE_READYZ,      /* /readyz */
    GW_ADMIN_ROUTE_METRICS,     /* /metrics */
    GW_ADMIN_ROUTE_STATUS,      /* /status */
    GW_ADMIN_ROUTE_SESSIONS,    /* /api/sessions */
    GW_ADMIN_ROUTE_PUBLISH,     /* POST /api/publish (JSON body) */
    GW_ADMIN_ROUTE_PREBIND,     /* POST /api/prebind (JSON body) */
    GW_ADMIN_ROUTE_DRAIN,       /* POST /api/drain (JSON body: {} or empty) */
    GW_ADMIN_ROUTE_SESSION_END, /* DELETE /api/sessions/<id> (no body; ?condition=) */
    GW_ADMIN_ROUTE_COUNT
};

/* Every refusal, as a value until it goes out. */
enum gw_admin_refusal {
    GW_ADMIN_OK = 0,          /* not refused */
    GW_ADMIN_ERR_HOST,        /* Host naming no address or name of ours (421) */
    GW_ADMIN_ERR_HOST_FIELD,  /* Host header missing, doubled, or not a valid field value (400) */
    GW_ADMIN_ERR_NO_TOKEN,    /* /api/ without a bearer token */
    GW_ADMIN_ERR_BAD_TOKEN,   /* /api/ with the wrong one */
    GW_ADMIN_ERR_NOT_FOUND,   /* no such path */
    GW_ADMIN_ERR_METHOD,      /* not GET or HEAD on a GET route */
    GW_ADMIN_ERR_BODY,        /* a request body on a GET route */
    GW_ADMIN_ERR_LIMIT,       /* /api/sessions?limit= out of range */
    GW_ADMIN_ERR_POST_ONLY,   /* not POST on a POST route */
    GW_ADMIN_ERR_MEDIA_TYPE,  /* a POST route's body is not application/json */
    GW_ADMIN_ERR_TOO_LARGE,   /* a POST route's body is past its bound (announced, or read) */
    GW_ADMIN_ERR_INTERNAL,    /* a body could not be rendered (the adapter's; never decided here) */
    GW_ADMIN_ERR_OFFSET,      /* /api/sessions?offset= not a number up to the table's bound */
    GW_ADMIN_ERR_FILTER,      /* /api/sessions?jid= or ?address= empty or too long */
    GW_ADMIN_ERR_DELETE_ONLY, /* not DELETE on /api/sessions/<id> */
    GW_ADMIN_ERR_CONDITION,   /* ?condition= not one an operator may end a session with */
    GW_ADMIN_ERR_NO_SESSION,  /* /api/sessions/<id>: no such session (the id's form is decided
                                 here, whether it is in the table by the adapter) */
    GW_ADMIN_ERR_COUNT
};

/* One request as the HTTP server read it. The strings stay the caller's. */
struct gw_admin_request {
    const char *method; /* as sent, e.g. "GET"; compared case-sensitively */
    const char *path;   /* the target's path, percent-decoded, without the query */
    const char *limit;  /* the query's "limit" argument, decoded; NULL when absent */
    const char *offset; /* the query's "offset", "jid", "address" and "condition", */
    const char *jid;    /* likewise; each NULL when absent */
    const char *address;
    const char *condition;
    const char *const *hosts;   /* the Host header values, in order (n_hosts of them) */
    size_t n_hosts;             /* Host headers seen; only one is accepted, so the caller may stop
                                   counting at two */
    const char *authorization;  /* the Authorization header, NULL when absent */
    bool has_body;              /* a body comes (Transfer-Encoding, or a Content-Length not 0) */
    const char *content_type;   /* the Content-Type header, NULL when absent */
    const char *content_length; /* the Content-Length header as sent, NULL when absent (chunked) */
};

/* What to do with it. */
struct gw_admin_decision {
    enum gw_admin_route route;     /* GW_ADMIN_ROUTE_NONE exactly when refused */
    enum gw_admin_refusal refusal; /* GW_ADMIN_OK exactly when routed */
    size_t limit;                  /* ROUTE_SESSIONS: entries to list, 1..the admin.h maximum */
    size_t offset;                 /* ROUTE_SESSIONS: matching entries to skip first */
    const char *jid;               /* ROUTE_SESSIONS: only this bare or full JID, or NULL */
    const char *address;           /* ROUTE_SESSIONS: only this client address, or NULL */
    const char *id;                /* ROUTE_SESSION_END: the session's id (GW_ADMIN_SID_HASH_LEN
                                      lowercase hex characters, within the request's path) */
    int condition;                 /* ROUTE_SESSION_END: the enum gw_condition to end it with */
    size_t body_max;               /* a POST route: bytes of body to read at most (past it, the
                                      adapter answers GW_ADMIN_ERR_TOO_LARGE); 0 otherwise */
    bool at_once;                  /* refused on the headers alone: answer before any body is
                                      read (the server then closes the connection) */
};

/* A refusal's answer. The body is one JSON object, {"error": what a person reads, "condition":
 * what a program tests}, the same for every endpoint. */
struct gw_admin_error {
    unsigned status;       /* HTTP status */
    const char *condition; /* the body's "condition" */
    const char *body;      /* the JSON body, constant, ending in a newline */
    const char *header;    /* one extra header (WWW-Authenticate, Allow), or NULL */
    const char *value;     /* its value */
};

/* Decide about req under cfg (admin.token, admin.hosts; read at each call, so a reload counts
 * from the next request). The refusals come in this order: Host first (not exactly one, or one
 * with a control, space or non-ASCII byte: 400; one naming nothing of ours: 421; a page that may
 * not ask must not learn even whether a token is set), the token for everything under /api/, then
 * path, method (GET or HEAD on a GET route, POST on a POST route, DELETE on ROUTE_SESSION_END),
 * the body (none on a GET or DELETE route; on a POST route application/json, then an announced
 * length within body_max), all on the headers (at_once), then the query arguments: limit, offset,
 * jid and address on /api/sessions, the id and the condition on /api/sessions/<id>. The same
 * arguments always give the same decision. */
void gw_admin_decide(const struct gw_config *cfg, const struct gw_admin_request *req,
                     struct gw_admin_decision *out);

/* The answer for a refusal; NULL for GW_ADMIN_OK or a value out of range. */
const struct gw_admin_error *gw_admin_error(enum gw_admin_refusal r);

/* May an operator end a session with c (DELETE /api/sessions/<id>)? The conditions that both
 * transports can send: policy-violation (the default), system-shutdown, undefined-condition,
 * internal-server-error, host-gone, remote-connection-failed. */
bool gw_admin_end_condition_ok(int c);

/* The path a route serves ("/healthz"...; "/api/sessions/" for ROUTE_SESSION_END, a prefix);
 * NULL for GW_ADMIN_ROUTE_NONE or out of range. */
const char *gw_admin_route_path(enum gw_admin_route r);
/* Is r answered to POST with a JSON body (else to GET and HEAD without one)? */
bool gw_admin_route_is_post(enum gw_admin_route r);

#endif
