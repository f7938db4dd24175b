#!/bin/sh
# Turns a role's lab image into a bare node (see Dockerfile). Argument: etcd, dbnode or haproxy.
# What pgha-lab's own lab adds is taken away (entrypoints, ectl, Patroni, the
# TLS folders, the empty data directory), and the packages' services are disabled: nothing runs at boot.
set -eu
role=$1
here=/tmp/bare
# The lab's own start-up and helpers: a bare node starts like a VM, through systemd.
rm -f /usr/local/bin/pgha-entrypoint /usr/local/bin/ectl
rm -rf /usr/local/lib/pgha-lab /etc/pgha-lab
install -d /usr/local/lib/pgha-lab
install -m 0755 "$here/boot" /usr/local/lib/pgha-lab/boot
# What a fresh Ubuntu install's /etc/hostname and /etc/hosts hold; `boot` puts them in place on the
# first boot (a build cannot write them: Docker mounts its own over them in every RUN step too).
echo ubuntu >/usr/local/lib/pgha-lab/hostname
cat >/usr/local/lib/pgha-lab/hosts <<'HOSTS'
127.0.0.1 localhost
127.0.1.1 ubuntu

# The following lines are desirable for IPv6 capable hosts
::1     ip6-localhost ip6-loopback
fe00::0 ip6-localnet
ff00::0 ip6-mcastprefix
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
HOSTS

case $role in
  etcd)
    # Ubuntu's package enables etcd.service (and its etcd2 alias); its default member lives in
    # /var/lib/etcd/default once it has run. Neither is left: the learner writes the member.
    systemctl disable etcd.service
    rm -rf /etc/etcd/tls /var/lib/etcd/default
    ;;
  haproxy)
    systemctl disable haproxy.service
    systemctl disable keepalived.service 2>/dev/null || true
    rm -rf /etc/haproxy/tls
    ;;
  dbnode)
    # PostgreSQL stays at /usr/lib/postgresql/18; no cluster, no Patroni, no configuration.
    rm -rf /opt/patroni /usr/local/bin/patroni /usr/local/bin/patronictl /etc/patroni /var/lib/postgresql/18
    # postgresql-common makes the socket folder at every boot; a PostgreSQL built from source gets the same line.
    if [ ! -e /usr/lib/tmpfiles.d/postgresql-common.conf ]; then
      echo 'd /run/postgresql 2775 postgres postgres - -' >/usr/lib/tmpfiles.d/postgresql.conf
    fi
    # Patroni's pinned wheels, where pip looks for them: `pip install 'patroni[psycopg3,etcd3]'`
    # in a venv works as typed, without the package index (unreachable from the lab network).
    install -d -m 0755 /var/cache/pgha-lab
    cp -r "$here/wheelhouse" /var/cache/pgha-lab/wheels
    install -m 0644 "$here/patroni.lock" /var/cache/pgha-lab/patroni.lock
    chmod -R a+rX /var/cache/pgha-lab
    cat >/etc/pip.conf <<'PIP'
# pgha-lab's bare node: the lab network has no route to the package index, so pip installs
# Patroni and its dependencies from the wheels pinned in /var/cache/pgha-lab/patroni.lock.
[global]
no-index = true
find-links = /var/cache/pgha-lab/wheels
PIP
    ;;
esac

# A VM runs no policy that stops package scripts from starting services.
rm -f /usr/sbin/policy-rc.d
# Lab names resolve the way they would between fresh VMs: from /etc/hosts only, once the hosts
# file says so, not through Docker's DNS (which knows every container by name).
sed -i 's/^hosts:.*/hosts:          files/' /etc/nsswitch.conf
# A fresh machine id on first boot, as an installer makes one.
: >/etc/machine-id
