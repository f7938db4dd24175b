# Sourced by every node entrypoint: TLS material in place for the service user, then the
# service exec'd as that user. setpriv (util-linux, always present) replaces this shell, so
# no su/runuser process stays between docker-init and the service.

TLS_MOUNT=/run/pgha-lab/tls

# pgha_install_tls DEST USER: copy the read-only mounted TLS files into DEST, owned by USER.
# Private keys must be 0600 and owned by the service user (PostgreSQL refuses anything else),
# which a read-only bind mount from the host cannot guarantee.
pgha_install_tls() {
  dest=$1; owner=$2
  [ -d "$TLS_MOUNT" ] || return 0
  install -d -o "$owner" -g "$owner" -m 0750 "$dest"
  for f in "$TLS_MOUNT"/*; do
    [ -f "$f" ] || continue
    name=${f##*/}
    case $name in
      *.key|*.pem) mode=0600 ;;
      *) mode=0644 ;;
    esac
    install -o "$owner" -g "$owner" -m "$mode" "$f" "$dest/$name"
  done
}

# pgha_exec_as USER CMD...: replace this shell with CMD running as USER (and its groups).
# PGHA_ENTRYPOINT_DRY_RUN=1 prints what would run instead, for tests and the curious.
pgha_exec_as() {
  owner=$1; shift
  home=$(getent passwd "$owner" | cut -d: -f6)
  if [ "${PGHA_ENTRYPOINT_DRY_RUN:-}" = 1 ]; then
    echo "exec as $owner (uid $(id -u "$owner")): $*"
    exit 0
  fi
  HOME=$home USER=$owner LOGNAME=$owner exec setpriv --reuid="$owner" --regid="$owner" --init-groups -- "$@"
}

# pgha_exec_root CMD...: for services that drop privileges themselves (HAProxy).
pgha_exec_root() {
  if [ "${PGHA_ENTRYPOINT_DRY_RUN:-}" = 1 ]; then
    echo "exec as root: $*"
    exit 0
  fi
  exec "$@"
}
