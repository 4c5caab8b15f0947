-- Prosody for docker/compose.yaml: the upstream of the gateway for the domain "localhost", c2s
-- with STARTTLS on the compose network only (no port is published), the certificate the "certs"
-- service made.
admins = { }
modules_enabled = {
    "roster"; "saslauth"; "tls"; "disco"; "carbons"; "pep"; "private"; "vcard4"; "vcard_legacy";
    "ping"; "register"; "smacks"; "pubsub";
}
allow_registration = false
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
log = { info = "*console" }
pidfile = "/var/run/prosody/prosody.pid"
certificates = "certs"

VirtualHost "localhost"
    ssl = { certificate = "/etc/prosody/certs/localhost.crt", key = "/etc/prosody/certs/localhost.key" }

Component "pubsub.localhost" "pubsub"
