#!/bin/sh
# Points apt at noble, noble-updates and noble-security (main and universe) on the mirror the
# image already uses, so a bootstrapped and a pulled ubuntu:24.04 end up with the same pockets.
# The mirror is read from the image's own sources: no host name is written into the project.
set -eu

sources=/etc/apt/sources.list.d/ubuntu.sources
mirror=""; security=""
if [ -s "$sources" ]; then
  # deb822 stanzas (the official image): the first URIs is the archive, the one whose
  # Suites name -security is the security archive.
  mirror=$(awk '/^URIs:/ {print $2; exit}' "$sources")
  security=$(awk 'BEGIN{RS=""} /-security/ {for (i = 1; i <= NF; i++) if ($i == "URIs:") {print $(i+1); exit}}' "$sources")
fi
if [ -z "$mirror" ] && [ -s /etc/apt/sources.list ]; then
  # one-line format (a debootstrapped rootfs)
  mirror=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "setup-apt: no Ubuntu mirror in this image's apt sources" >&2; exit 1; }
[ -n "$security" ] || security="$mirror"

keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg
cat >"$sources" <<SRC
Types: deb
URIs: $mirror
Suites: noble noble-updates
Components: main universe
Signed-By: $keyring

Types: deb
URIs: $security
Suites: noble-security
Components: main universe
Signed-By: $keyring
SRC
# The one-line list would duplicate the stanzas above.
rm -f /etc/apt/sources.list
printf '# moved to /etc/apt/sources.list.d/ubuntu.sources\n' >/etc/apt/sources.list

# Like the official minimized image: no recommends, no docs or translations, and package
# scripts never start services (the entrypoint does, as the service user).
cat >/etc/apt/apt.conf.d/90pgha-lab <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
APT
cat >/etc/dpkg/dpkg.cfg.d/90pgha-lab-minimal <<'DPKG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*/LC_MESSAGES/*.mo
path-exclude=/usr/share/lintian/*
DPKG
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

# Where the build scripts read the mirror from (the PostgreSQL source tarball lies in its pool).
mkdir -p /usr/local/lib/pgha-lab
printf '%s\n' "$mirror" >/usr/local/lib/pgha-lab/ubuntu-mirror
