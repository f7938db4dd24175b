#!/usr/bin/env bash
# Prepares a host for pgha-lab: a running Docker engine, Compose v2 and debootstrap; with --tests
# also Chromium, the browser the dashboard's tests drive (Debian's and Ubuntu's `chromium`).
#
# As root on Debian or Ubuntu it installs what is missing from the distribution's own
# packages and starts the engine. Anywhere else it only checks and says what to install.
# Compose v2 is not in Debian 12's suite; Debian 13's docker-compose package is Compose v2
# and needs only libc, so on Debian 12 it is fetched from the trixie suite of the mirror
# this host's apt sources already name.
set -euo pipefail

for_tests=0
[ "${1:-}" = "--tests" ] && for_tests=1

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

engine_up() { docker info >/dev/null 2>&1; }
compose_v2() { docker compose version 2>/dev/null | grep -qE 'v?2\.'; }
have() { command -v "$1" >/dev/null 2>&1; }

os_id=""; os_codename=""
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  os_id="${ID:-}"; os_codename="${VERSION_CODENAME:-}"
fi
is_debian_like() { [ "$os_id" = debian ] || [ "$os_id" = ubuntu ]; }

bootstrap_ready() { have debootstrap && [ -e /usr/share/keyrings/ubuntu-archive-keyring.gpg ]; }
browser_ready() { [ "$for_tests" = 0 ] || have chromium; }

# Each bare lab node's systemd takes inotify instances from root's host-wide allowance (128 by
# default on Debian): a few bare labs at once exhaust it and a node fails to boot. Raised as root,
# and kept across reboots; elsewhere only said.
INOTIFY_WANTED=1024
inotify_now=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo "$INOTIFY_WANTED")
if [ "$inotify_now" -lt "$INOTIFY_WANTED" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    say "raising fs.inotify.max_user_instances from $inotify_now to $INOTIFY_WANTED (bare labs' systemd)"
    if sysctl -q -w fs.inotify.max_user_instances="$INOTIFY_WANTED" 2>/dev/null; then
      echo "fs.inotify.max_user_instances = $INOTIFY_WANTED" >/etc/sysctl.d/60-pgha-lab.conf
    else
      say "could not raise it here (a read-only /proc/sys?); raise it on the host running Docker"
    fi
  else
    say "fs.inotify.max_user_instances is $inotify_now; raise it to $INOTIFY_WANTED as root for several bare labs at once"
  fi
fi

if engine_up && compose_v2 && bootstrap_ready && browser_ready; then
  say "Docker engine $(docker version -f '{{.Server.Version}}' 2>/dev/null) and $(docker compose version --short 2>/dev/null | sed 's/^/Compose /') are ready."
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! is_debian_like; then
  browser_ready || die "the browser tests need Chromium at /usr/bin/chromium; install the chromium package, or run this script as root on Debian or Ubuntu."
  if engine_up && compose_v2; then
    say "Docker is ready; without debootstrap and Ubuntu's archive keyring, the base image must come from a registry."
    exit 0
  fi
  missing=()
  engine_up || missing+=("a running Docker engine (Docker Engine or Docker Desktop)")
  compose_v2 || missing+=("Docker Compose v2 (the 'docker compose' plugin)")
  die "missing: ${missing[*]}; install them, or run this script as root on Debian or Ubuntu to install them."
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() {
  [ "$apt_updated" = 1 ] || { apt-get update -q >/dev/null; apt_updated=1; }
  apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

if ! browser_ready; then
  say "installing Chromium for the browser tests"
  apt_install chromium
fi
if ! have dockerd; then
  say "installing the Docker engine (docker.io) and debootstrap from the distribution"
  apt_install docker.io debootstrap iptables ca-certificates
elif ! have debootstrap; then
  apt_install debootstrap
fi

# Packages Debian 12 lacks (Compose v2, Ubuntu's archive keyring for debootstrap) come from
# Debian 13, whose packages of them need nothing newer than Debian 12's libc.
install_from_trixie() {
  local uri tmp
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || die "no Debian mirror found in this host's apt sources; install $* by hand."
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" >"$tmp/trixie.list"
  local opts=(-o "Dir::Etc::sourcelist=$tmp/trixie.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::archives=$tmp/archives" -o APT::Sandbox::User=root)
  say "installing $* from Debian 13"
  apt-get "${opts[@]}" update -q >/dev/null
  (cd "$tmp" && apt-get "${opts[@]}" download "$@" >/dev/null)
  dpkg -i "$tmp"/*.deb >/dev/null
  rm -rf "$tmp"
}
install_compose_v2() {
  if [ "$os_id" = ubuntu ]; then apt_install docker-compose-v2; return; fi
  install_from_trixie docker-compose
}
compose_v2 || install_compose_v2
# debootstrap needs Ubuntu's archive keys to verify a noble bootstrap; Ubuntu has them already.
if [ ! -e /usr/share/keyrings/ubuntu-archive-keyring.gpg ]; then
  if [ "$os_id" = ubuntu ]; then apt_install ubuntu-keyring; else install_from_trixie ubuntu-keyring; fi
fi
# Debian's package installs the plugin where its own CLI looks; make every CLI find it.
if ! compose_v2 && [ -x /usr/libexec/docker/cli-plugins/docker-compose ]; then
  mkdir -p /usr/local/lib/docker/cli-plugins
  ln -sf /usr/libexec/docker/cli-plugins/docker-compose /usr/local/lib/docker/cli-plugins/docker-compose
fi

start_engine() {
  if have systemctl && [ -d /run/systemd/system ]; then
    systemctl start docker && return 0
  fi
  # No init system (containers, CI sandboxes): run the daemon in the background ourselves.
  mkdir -p /var/log
  nohup dockerd >/var/log/dockerd.log 2>&1 &
}
if ! engine_up; then
  say "starting the Docker engine"
  start_engine
  for _ in $(seq 1 60); do engine_up && break; sleep 1; done
  engine_up || { tail -n 20 /var/log/dockerd.log 2>/dev/null >&2 || true; die "the Docker engine did not start; see /var/log/dockerd.log."; }
fi
compose_v2 || die "Docker Compose v2 is still missing after install; install it by hand."
say "Docker engine $(docker version -f '{{.Server.Version}}') and Compose $(docker compose version --short) are ready."
