#!/bin/sh
# Install the codex-gateway binary for this machine (Linux or macOS), no Rust toolchain and no sudo:
#
#   curl -fsSL https://github.com/codex-gateway/codex-gateway/releases/latest/download/install.sh | sh
#   sh install.sh [--version vX.Y.Z]
#
# It downloads codex-gateway-<target>.tar.xz (the .tar.gz where xz is missing) and SHA256SUMS from the
# release, refuses to go on unless the archive's SHA-256 matches its line in SHA256SUMS, and puts the
# binary into the install folder (replacing an older one in a single rename).
#
# Environment:
#   CODEX_GATEWAY_INSTALL_DIR   where the binary goes (default: $HOME/.local/bin)
#   CODEX_GATEWAY_DOWNLOAD_URL  the folder holding the archives and SHA256SUMS (default: the latest
#                               GitHub release; --version picks another release of the default)
#   CODEX_GATEWAY_ARCHIVE_FORMAT  tar.xz or tar.gz (default: tar.xz where tar can open it)
#
# POSIX sh: runs under dash, bash and macOS's sh.
set -eu

REPO_URL="https://github.com/codex-gateway/codex-gateway"

say() { printf '%s\n' "$*"; }
err() { printf 'codex-gateway install: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

usage() {
    cat <<EOF
Install the codex-gateway binary for this machine.

usage: install.sh [--version vX.Y.Z]

  --version vX.Y.Z  install that release instead of the latest one
  -h, --help        this text

Environment: CODEX_GATEWAY_INSTALL_DIR (default \$HOME/.local/bin),
CODEX_GATEWAY_DOWNLOAD_URL (default $REPO_URL/releases/latest/download),
CODEX_GATEWAY_ARCHIVE_FORMAT (tar.xz or tar.gz; default tar.xz where tar can open it).
EOF
}

version=""
while [ $# -gt 0 ]; do
    case "$1" in
        --version) [ $# -ge 2 ] || die "--version needs a release, e.g. --version v0.1.0"; version="$2"; shift 2 ;;
        --version=*) version="${1#--version=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
case "$version" in
    "") ;;
    v*) ;;
    *) version="v$version" ;;
esac

# --- which archive -------------------------------------------------------------------------------

os="$(uname -s)"
arch="$(uname -m)"
case "$arch" in
    x86_64|amd64) arch=x86_64 ;;
    aarch64|arm64) arch=aarch64 ;;
    *) die "no prebuilt binary for the $arch processor; build from source: $REPO_URL" ;;
esac
case "$os" in
    Linux)
        target="$arch-unknown-linux-gnu"
        if ldd --version 2>&1 | grep -qi musl; then
            die "this Linux uses musl libc; the prebuilt binaries need glibc 2.17 or newer. Build from source: $REPO_URL"
        fi
        ;;
    Darwin)
        # A shell under Rosetta reports x86_64 on Apple silicon: take the native binary there.
        if [ "$arch" = x86_64 ] && [ "$(sysctl -n hw.optional.arm64 2>/dev/null || true)" = 1 ]; then
            arch=aarch64
        fi
        target="$arch-apple-darwin"
        ;;
    MINGW*|MSYS*|CYGWIN*|Windows_NT)
        die "on Windows, run install.ps1 in PowerShell instead: irm $REPO_URL/releases/latest/download/install.ps1 | iex" ;;
    *) die "no prebuilt binary for $os; build from source: $REPO_URL" ;;
esac
# The smaller .tar.xz where tar can open it (macOS's tar reads xz itself; GNU tar runs `xz`), else the .tar.gz;
# CODEX_GATEWAY_ARCHIVE_FORMAT=tar.gz or tar.xz chooses.
format="${CODEX_GATEWAY_ARCHIVE_FORMAT:-}"
if [ -z "$format" ]; then
    if [ "$os" = Darwin ] || command -v xz >/dev/null 2>&1; then format=tar.xz; else format=tar.gz; fi
fi
case "$format" in
    tar.xz) unpack_flag=-xJf ;;
    tar.gz) unpack_flag=-xzf ;;
    *) die "CODEX_GATEWAY_ARCHIVE_FORMAT must be tar.gz or tar.xz, not $format" ;;
esac
archive="codex-gateway-$target.$format"

if [ -n "${CODEX_GATEWAY_DOWNLOAD_URL:-}" ]; then
    base="${CODEX_GATEWAY_DOWNLOAD_URL%/}"
    [ -z "$version" ] || err "note: CODEX_GATEWAY_DOWNLOAD_URL is set, so --version $version is not used"
elif [ -n "$version" ]; then
    base="$REPO_URL/releases/download/$version"
else
    base="$REPO_URL/releases/latest/download"
fi
install_dir="${CODEX_GATEWAY_INSTALL_DIR:-${HOME:?HOME is not set; set CODEX_GATEWAY_INSTALL_DIR}/.local/bin}"

# --- tools ---------------------------------------------------------------------------------------

download() { # URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        die "neither curl nor wget is installed; install one of them"
    fi
}

sha256_of() { # FILE -> hex digest
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | awk '{print $1}'
    elif command -v openssl >/dev/null 2>&1; then
        openssl dgst -sha256 -r "$1" | awk '{print $1}'
    else
        die "no sha256sum, shasum or openssl to check the download with"
    fi
}

tmp="$(mktemp -d 2>/dev/null || mktemp -d -t codex-gateway)"
staged=""
cleanup() {
    rm -rf "$tmp"
    [ -z "$staged" ] || rm -f "$staged"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- download and check --------------------------------------------------------------------------

say "Downloading $archive from $base"
download "$base/$archive" "$tmp/$archive" || die "could not download $base/$archive"
download "$base/SHA256SUMS" "$tmp/SHA256SUMS" || die "could not download $base/SHA256SUMS"

# The archive's line: "<64 hex>  <name>" as sha256sum writes it ("*<name>" in binary mode, "./<name>" too).
expected="$(awk -v n="$archive" '$2 == n || $2 == "*" n || $2 == "./" n { print $1 }' "$tmp/SHA256SUMS")"
case "$expected" in
    "") die "SHA256SUMS has no entry for $archive: refusing to install an unchecked download (nothing was installed)" ;;
    *[!0-9a-fA-F]*) die "SHA256SUMS has a malformed or repeated entry for $archive: refusing to install (nothing was installed)" ;;
esac
[ "${#expected}" -eq 64 ] || die "SHA256SUMS has a malformed entry for $archive: refusing to install (nothing was installed)"
actual="$(sha256_of "$tmp/$archive")"
expected="$(printf '%s' "$expected" | tr 'A-F' 'a-f')"
if [ "$actual" != "$expected" ]; then
    die "checksum mismatch for $archive (expected $expected, got $actual): the download is damaged or not the released file; nothing was installed"
fi
say "Checksum verified (sha256 $actual)"

mkdir "$tmp/x"
tar "$unpack_flag" "$tmp/$archive" -C "$tmp/x" || die "could not unpack $archive"
binary="$tmp/x/codex-gateway-$target/codex-gateway"
[ -f "$binary" ] || die "$archive has no codex-gateway-$target/codex-gateway"

# --- install -------------------------------------------------------------------------------------

mkdir -p "$install_dir" || die "cannot create $install_dir; set CODEX_GATEWAY_INSTALL_DIR to a folder you can write"
staged="$install_dir/.codex-gateway.tmp.$$"
cp "$binary" "$staged" || die "cannot write to $install_dir; set CODEX_GATEWAY_INSTALL_DIR to a folder you can write"
chmod 755 "$staged"
if ! version_output="$("$staged" --version 2>&1)"; then
    err "the downloaded binary does not run on this machine:"
    printf '%s\n' "$version_output" >&2
    [ "$os" != Linux ] || err "(the Linux binaries need glibc 2.17 or newer)"
    die "nothing was installed"
fi
installed_version="$(printf '%s\n' "$version_output" | head -n 1)"  # "codex-gateway X.Y.Z"; then target, commit
mv -f "$staged" "$install_dir/codex-gateway"
staged=""
say "Installed $installed_version to $install_dir/codex-gateway"

# --- what next -----------------------------------------------------------------------------------

case ":${PATH:-}:" in
    *":$install_dir:"*|*":$install_dir/:"*)
        cmd="codex-gateway"
        say "$install_dir is on your PATH."
        ;;
    *)
        cmd="$install_dir/codex-gateway"
        say ""
        say "$install_dir is not on your PATH. Add it, e.g. in ~/.profile (or ~/.zshrc):"
        say "    export PATH=\"$install_dir:\$PATH\""
        ;;
esac
say ""
say "Next, start the gateway (it serves http://127.0.0.1:8765):"
say "    $cmd serve"
say "then point a client at it (claude-code, codex, gemini, opencode, aider or continue):"
say "    $cmd connect claude-code"
