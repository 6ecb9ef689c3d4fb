#!/usr/bin/env bash
# Builds dist/ (make dist): static iapd binaries for linux/amd64 and
# linux/arm64, one .deb per architecture (nfpm), and SHA256SUMS over them.
#
# The version is the one `iapd version` prints: Go stamps the module version
# from the git tag (v1.2.3), or a pseudo-version from the commit
# (v0.0.0-20261207221240-846954d1b2c3), into the binary's build information,
# which `iapd version`, iap_build_info and backups read. That needs
# -buildvcs=true (this machine's go env sets it false) and a .git directory:
# from a git worktree (.git is a file, which Go does not read) HEAD is built
# in a temporary clone, without uncommitted changes.
#
# Knobs: DIST_ARCHES (default "amd64 arm64"), NFPM (the nfpm command),
# DEB_MAINTAINER (the package's Maintainer field).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
out=$root/dist
arches=${DIST_ARCHES:-amd64 arm64}
nfpm=${NFPM:-go run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0}
maintainer=${DEB_MAINTAINER:-iapd maintainers <maintainers@iapd.example.org>}
hostarch=$(go env GOHOSTARCH)

die() { echo "dist: $*" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

src=$root
if [ ! -d "$root/.git" ]; then
	rev=$(git -C "$root" rev-parse HEAD) || die "not a git checkout: the version comes from git"
	if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
		echo "dist: warning: uncommitted changes are left out (building HEAD $rev in a clone)" >&2
	fi
	git clone -q --no-checkout "$root" "$work/src"
	git -C "$work/src" checkout -q --detach "$rev"
	src=$work/src
fi

rm -rf "$out"
mkdir -p "$out"

# The binaries: static, reproducible (-trimpath, no build id), stripped.
for a in $arches; do
	echo "== go build linux/$a"
	(cd "$src" && CGO_ENABLED=0 GOOS=linux GOARCH=$a go build -buildvcs=true -trimpath \
		-ldflags='-s -w -buildid=' -o "$out/iapd-linux-$a" ./cmd/iapd)
done

# The stamped version, read back from a binary's build information.
first=${arches%% *}
goversion=$(go version -m "$out/iapd-linux-$first" | awk '$1 == "mod" { print $3 }')
revision=$(go version -m "$out/iapd-linux-$first" | awk '$1 == "build" && $2 ~ /^vcs.revision=/ { sub(/^vcs.revision=/, "", $2); print $2 }')
case $goversion in
v[0-9]*) ;;
*) die "the binary carries no version ($goversion): is git installed and is this a git checkout?" ;;
esac
[ -n "$revision" ] || die "the binary carries no vcs.revision"
echo "== version $goversion (commit $revision)"

# The Debian version: v1.2.3 → 1.2.3; a pre-release or pseudo-version
# sorts before its release (- → ~): v0.0.0-2026…-846954d1b2c3 → 0.0.0~2026….846954d1b2c3;
# +dirty stays build metadata.
debver=${goversion#v}
meta=
case $debver in *+*) meta=${debver#*+} debver=${debver%%+*} ;; esac
case $debver in *-*) pre=${debver#*-} debver="${debver%%-*}~${pre//-/.}" ;; esac
[ -z "$meta" ] || debver="$debver+$meta"
echo "$goversion" >"$out/VERSION"

commitdate=$(git -C "$src" log -1 --format=%cD "$revision")
SOURCE_DATE_EPOCH=$(git -C "$src" log -1 --format=%ct "$revision")
export SOURCE_DATE_EPOCH

# Files common to every architecture, staged under $work/common.
common=$work/common
mkdir -p "$common/units" "$common/dropins" "$common/doc" "$common/scripts"

# docs/systemd/: unit files go to /lib/systemd/system (with ExecStart on
# /usr/bin/iapd); a drop-in directory (iapd.service.d/…) is opt-in, shipped
# under /usr/share/iapd/systemd/ for the operator to copy or link. A file
# neither rule covers stops the build.
# A packaged unit says so first: it is changed with a drop-in, not edited.
unit_header="# Installed by the iapd package: change it with 'systemctl edit UNIT' (a drop-in
# in /etc/systemd/system), not here. The install steps below are for the manual install."
units=
while IFS= read -r f; do
	rel=${f#docs/systemd/}
	case $rel in
	*/*) dst=$common/dropins/$rel ;;
	*.service | *.socket | *.timer | *.path | *.target)
		dst=$common/units/$rel
		units="$units $rel"
		;;
	*) die "docs/systemd/$rel: no packaging rule (units go to /lib/systemd/system, drop-in directories to /usr/share/iapd/systemd): add one in packaging/dist.sh" ;;
	esac
	mkdir -p "$(dirname "$dst")"
	{
		case $rel in */*) ;; *) echo "$unit_header" ;; esac
		sed 's#/usr/local/bin/iapd#/usr/bin/iapd#g' "$src/$f"
	} >"$dst"
done < <(cd "$src" && find docs/systemd -type f | LC_ALL=C sort)
[ -n "$units" ] || die "docs/systemd holds no unit"
# Sockets first: stopping a socket before its service keeps it from starting it again.
units=$(for u in $units; do case $u in *.socket) echo "0 $u" ;; *) echo "1 $u" ;; esac; done | LC_ALL=C sort | awk '{ print $2 }' | tr '\n' ' ')
units=${units% }
grep -q '^ExecStart=/usr/bin/iapd ' "$common/units/iapd.service" ||
	die "the packaged iapd.service does not start /usr/bin/iapd: $(grep '^ExecStart=' "$common/units/iapd.service")"

for s in postinst prerm postrm; do
	sed "s#@UNITS@#$units#" "$root/packaging/deb/$s" >"$common/scripts/$s"
done

# /usr/share/doc/iapd: copyright (with the Go modules linked into the
# binary), changelog.Debian.gz, the README.
{
	cat "$root/packaging/deb/copyright"
	echo
	echo "Files: usr/bin/iapd"
	echo "Comment: iapd is statically linked with these Go modules, each under"
	echo " its own license (the LICENSE file of the module at that version):"
	go version -m "$out/iapd-linux-$first" | awk '$1 == "dep" { printf " %s %s\n", $2, $3 }'
} >"$common/doc/copyright"
{
	echo "iapd ($debver-1) unstable; urgency=medium"
	echo
	echo "  * iapd $goversion"
	echo "    (commit $revision)."
	echo "  * Upgrading: README \"Upgrade iapd\" (/usr/share/doc/iapd)."
	echo
	echo " -- $maintainer  $commitdate"
} | gzip -9n >"$common/doc/changelog.Debian.gz"
gzip -9n <"$src/README.md" >"$common/doc/README.md.gz"

# The manual page: iapd help, as a man(7) page.
"$out/iapd-linux-$hostarch" help >"$work/help.txt" 2>&1 || true
[ -s "$work/help.txt" ] || die "iapd help printed nothing (the manual page is made from it)"
{
	echo ".TH IAPD 1 \"$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)\" \"iapd $goversion\" \"iapd\""
	echo ".SH NAME"
	echo "iapd \\- self-hosted server for Odoo's In-App Purchase protocol"
	echo ".SH SYNOPSIS"
	echo ".nf"
	sed -e 's/\\/\\e/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\\&'/" "$work/help.txt"
	echo ".fi"
	echo ".SH FILES"
	echo "/etc/iapd/iapd.yaml (configuration), /etc/iapd/admin-token (admin token),"
	echo "/var/lib/iapd (the ledger)."
	echo ".SH SEE ALSO"
	echo "/usr/share/doc/iapd/README.md.gz, the operator's manual."
} | gzip -9n >"$common/doc/iapd.1.gz"

for a in $arches; do
	cfg=$work/nfpm-$a.yaml
	{
		cat <<YAML
name: iapd
arch: $a
platform: linux
version: "$debver"
version_schema: none
release: "1"
section: net
priority: optional
maintainer: "$maintainer"
homepage: https://github.com/iapd/iapd
license: see /usr/share/doc/iapd/copyright
description: |-
  Self-hosted server for Odoo's In-App Purchase (IAP) protocol
  iapd answers Odoo 16 to 19 where Odoo calls Odoo's IAP servers: credit,
  SMS, letters, partner autocomplete and the other IAP services, with a
  durable ledger of prepaid credit, a portal, and Prometheus metrics.
depends:
  - adduser
  - init-system-helpers (>= 1.54~)
scripts:
  postinstall: $common/scripts/postinst
  preremove: $common/scripts/prerm
  postremove: $common/scripts/postrm
contents:
  - src: $out/iapd-linux-$a
    dst: /usr/bin/iapd
    file_info: {mode: 0755}
  # 0755/0644 here; postinst's dpkg-statoverride makes them root:iapd
  # 0750/0640, which dpkg keeps on every upgrade.
  - dst: /etc/iapd
    type: dir
    file_info: {mode: 0755}
  - src: $src/docs/iapd.example.yaml
    dst: /etc/iapd/iapd.yaml
    type: config|noreplace
    file_info: {mode: 0644}
  - src: $common/doc/copyright
    dst: /usr/share/doc/iapd/copyright
    file_info: {mode: 0644}
  - src: $common/doc/changelog.Debian.gz
    dst: /usr/share/doc/iapd/changelog.Debian.gz
    file_info: {mode: 0644}
  - src: $common/doc/README.md.gz
    dst: /usr/share/doc/iapd/README.md.gz
    file_info: {mode: 0644}
  - src: $common/doc/iapd.1.gz
    dst: /usr/share/man/man1/iapd.1.gz
    file_info: {mode: 0644}
  - src: $root/packaging/deb/lintian-overrides
    dst: /usr/share/lintian/overrides/iapd
    file_info: {mode: 0644}
YAML
		for u in $units; do
			printf '  - src: %s\n    dst: /lib/systemd/system/%s\n    file_info: {mode: 0644}\n' "$common/units/$u" "$u"
		done
		(cd "$common/dropins" && find . -type f | LC_ALL=C sort) | while IFS= read -r f; do
			printf '  - src: %s\n    dst: /usr/share/iapd/systemd/%s\n    file_info: {mode: 0644}\n' "$common/dropins/${f#./}" "${f#./}"
		done
	} >"$cfg"
	echo "== nfpm deb linux/$a"
	$nfpm package --config "$cfg" --packager deb --target "$out/iapd_${debver}-1_$a.deb" >/dev/null
done

(cd "$out" && sha256sum iapd-linux-* ./*.deb | sed 's# \./# #' >SHA256SUMS)
echo "== dist/"
(cd "$out" && ls -l)
