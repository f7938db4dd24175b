#!/bin/sh
# Makes the image a PostgreSQL host as Ubuntu's packages leave it: the postgres user, its
# socket and data folders, Patroni on PATH. Argument: how PostgreSQL was installed.
set -eu
method=$1

# Same account as postgresql-common creates (it exists already when pgdg installed it).
if ! getent passwd postgres >/dev/null; then
  useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
    --shell /bin/bash --comment "PostgreSQL administrator" postgres
fi
install -d -o postgres -g postgres -m 0755 /var/lib/postgresql /var/lib/postgresql/18
install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/18/main
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
install -d -o postgres -g postgres -m 0750 /etc/patroni /etc/patroni/tls

ln -sf /opt/patroni/bin/patroni /usr/local/bin/patroni
ln -sf /opt/patroni/bin/patronictl /usr/local/bin/patronictl
# Login shells (docker exec -it dbnode1 bash -l, su - postgres) find pg_ctl and friends too.
echo 'PATH=/usr/lib/postgresql/18/bin:$PATH' >/etc/profile.d/postgresql.sh

install -d /etc/pgha-lab
version=$(/usr/lib/postgresql/18/bin/postgres --version | awk '{print $NF}')
printf 'method=%s\nversion=%s\n' "$method" "$version" >/etc/pgha-lab/postgresql-install
