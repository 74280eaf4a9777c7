# Shared by scripts/cross and scripts/package: builds the bramble binary for a Debian
# architecture with cargo-zigbuild, against glibc 2.28 whatever the build machine has, so
# one binary runs on every Raspberry Pi OS still in use (Buster: glibc 2.28, Bullseye: 2.31,
# Bookworm: 2.36, Trixie: 2.41). A plain cross gcc links against the build machine's glibc
# (Debian 12: 2.36), and binaries linked against glibc >= 2.34 need it at run time.
# zig also links the unwinder statically, so the binary needs libc alone.
#
# Source it, then: pi_build_setup; pi_build <amd64|arm64|armhf> <cargo profile>; the path
# of the binary is in $pi_bin.

# The glibc the binaries are linked against; the packages depend on libc6 (>= it).
PI_GLIBC=2.28
# Pinned tool versions (PyPI), so every build uses the same linker.
PI_ZIG_VERSION=0.17.0
PI_ZIGBUILD_VERSION=0.24.0

# The Rust target of a Debian architecture.
pi_rust_target() {
    case "$1" in
        amd64) echo x86_64-unknown-linux-gnu ;;
        arm64) echo aarch64-unknown-linux-gnu ;;
        armhf) echo armv7-unknown-linux-gnueabihf ;;
        *) echo "unknown architecture $1 (amd64, arm64 or armhf)" >&2; return 1 ;;
    esac
}

# Installs what the builds need, where missing: the Rust targets, zig and cargo-zigbuild.
pi_build_setup() {
    local installed t
    installed=$(rustup target list --installed)
    for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
        grep -qx "$t" <<<"$installed" || rustup target add "$t"
    done
    # pip puts commands in the interpreter's scripts directory, which may not be on PATH.
    PATH=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH
    export PATH
    if ! command -v cargo-zigbuild >/dev/null \
        || ! python3 -m ziglang version 2>/dev/null | grep -qx "$PI_ZIG_VERSION"; then
        echo "==> installing ziglang $PI_ZIG_VERSION and cargo-zigbuild $PI_ZIGBUILD_VERSION (PyPI)"
        python3 -m pip install --quiet --disable-pip-version-check \
            "ziglang==$PI_ZIG_VERSION" "cargo-zigbuild==$PI_ZIGBUILD_VERSION"
        hash -r
    fi
}

# Builds bramble for Debian architecture $1 with cargo profile $2; sets pi_bin.
pi_build() {
    local target dir
    target=$(pi_rust_target "$1")
    echo "==> bramble for $1 ($target, glibc $PI_GLIBC, profile $2)"
    cargo zigbuild --profile "$2" --target "$target.$PI_GLIBC" -p bramble --bin bramble
    dir=$2
    [ "$2" = dev ] && dir=debug
    pi_bin=target/$target/$dir/bramble
    ls -l "$pi_bin"
}
