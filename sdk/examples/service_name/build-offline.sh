#!/bin/sh
# Builds the plugin without `rustup target add`, with Debian's rustc-web
# (apt-get install rustc-web cargo-web rust-web-src lld-22 wasi-libc).
set -e
cd "$(dirname "$0")"
RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTFLAGS="-C target-feature=+simd128" \
  /usr/bin/cargo build --release -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown "$@"
