#!/bin/sh
# Compiles PostgreSQL 18 from the release tarball into /usr/lib/postgresql/18, the prefix
# Ubuntu's packages use, so pg_ctl, pg_rewind and psql live where a DBA looks for them.
# Only what the lab runs is built: the server, src/bin tools and two cheap contrib modules.
set -eu
: "${PG_SOURCE_SHA256:?}"
url=${PG_SOURCE_URL:-}
if [ -z "$url" ]; then
  mirror=$(cat /usr/local/lib/pgha-lab/ubuntu-mirror)
  url="${mirror%/}/${PG_SOURCE_PATH:?}"
fi
echo "build-postgresql: fetching $url"
cd /tmp
curl -fsSL --retry 3 -o postgresql.tar.bz2 "$url"
echo "$PG_SOURCE_SHA256  postgresql.tar.bz2" | sha256sum -c -
mkdir src && tar -xjf postgresql.tar.bz2 -C src --strip-components=1
cd src
./configure --prefix=/usr/lib/postgresql/18 \
  --with-openssl --with-icu --with-lz4 --with-zstd --with-readline \
  --with-pgport=5432 --without-llvm \
  CFLAGS="-O2 -pipe" >/tmp/configure.log 2>&1 || { tail -n 40 /tmp/configure.log; exit 1; }
make -s -j"$(nproc)" >/tmp/make.log 2>&1 || { tail -n 60 /tmp/make.log; exit 1; }
make -s install-strip >/dev/null
for module in pg_stat_statements pg_buffercache; do
  make -s -C "contrib/$module" -j"$(nproc)" install-strip >/dev/null
done
/usr/lib/postgresql/18/bin/postgres --version
cd / && rm -rf /tmp/src /tmp/postgresql.tar.bz2
