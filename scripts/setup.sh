#!/usr/bin/env bash
# Installs what building StreamHouse needs on a fresh Debian machine, only
# when it is missing: cmake and a C/C++ toolchain (grpcio-sys builds gRPC
# C-core 1.56 from source), pkg-config and OpenSSL headers (native-tls for
# S3), curl and python3 (the S3 test server script).
set -euo pipefail

need=()
for pkg in cmake make gcc g++ pkg-config libssl-dev curl python3 python3-pip; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# A python3 from elsewhere (pyenv) counts.
have_python=0
have_pip=0
if command -v python3 >/dev/null 2>&1; then
  have_python=1
  python3 -m pip --version >/dev/null 2>&1 && have_pip=1
fi
pkgs=()
for p in "${need[@]}"; do
  # Whole names only: removing "python3" must leave "python3-pip" alone.
  [ "$p" = python3 ] && [ "$have_python" = 1 ] && continue
  [ "$p" = python3-pip ] && [ "$have_pip" = 1 ] && continue
  pkgs+=("$p")
done

if [ ${#pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${pkgs[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

command -v cargo >/dev/null 2>&1 || { echo "setup: cargo is missing; install Rust (rustup) first" >&2; exit 1; }
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done
