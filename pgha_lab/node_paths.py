"""Paths inside the node containers: the contract shared by the images, the rendered configs and compose.

They follow an Ubuntu 24.04 estate built by hand, so a DBA finds things where they expect them.
"""

PG_MAJOR = 18
PG_BIN = f"/usr/lib/postgresql/{PG_MAJOR}/bin"
PG_DATA = f"/var/lib/postgresql/{PG_MAJOR}/main"
PG_HOME = "/var/lib/postgresql"
PG_RUN = "/var/run/postgresql"              # unix socket directory

PATRONI_VENV = "/opt/patroni"
PATRONI_CONFIG = "/etc/patroni/config.yml"
PATRONI_TLS = "/etc/patroni/tls"

ETCD_CONFIG = "/etc/etcd/etcd.conf.yml"
ETCD_DATA_ROOT = "/var/lib/etcd"
ETCD_TLS = "/etc/etcd/tls"
ECTL_ENV = "/etc/etcd/ectl.env"             # read by the `ectl` wrapper: endpoints and client certificate

HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg"
HAPROXY_TLS = "/etc/haproxy/tls"

# Each node's TLS material is mounted read-only here; the image's entrypoint copies it into the
# role's TLS folder above, owned by the service user with keys 0600 (PostgreSQL insists), so the
# host never has to know the container's user ids.
TLS_MOUNT = "/run/pgha-lab/tls"
