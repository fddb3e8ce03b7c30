#!/usr/bin/env bash
# Installs every peer the tests need, then runs every check and test.
#
# Idempotent: what is already installed is reused. Everything comes from
# Debian's packages, PyPI or crates.io. Under CI=true a test whose peer is
# missing fails instead of skipping, so this script must install it.
set -euo pipefail
cd "$(dirname "$0")/.."

peers="${SPILLWAY_PEERS:-$HOME/.cache/spillway-peers}"
mkdir -p "$peers"

step() { printf '\n==> %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------
# mkfifo/kill (coreutils, procps) are used by the shutdown tests.
need_apt=()
command -v mkfifo >/dev/null || need_apt+=(coreutils)
command -v kill >/dev/null || need_apt+=(procps)
# softflowd: a real NetFlow exporter for the live collection tests.
command -v softflowd >/dev/null || need_apt+=(softflowd)
# tshark (with capinfos): the reference decoder the sampling and capture
# tests compare with.
command -v tshark >/dev/null || need_apt+=(tshark)
# sFlow (TOOLCHAIN.md): pmacct's pmacctd (sfprobe plugin) is the exporter;
# sfcapd (nfdump-sflow) and nfdump are the reference decoders; dumpcap
# (with tshark) captures the export for the pcap source.
command -v pmacctd >/dev/null || need_apt+=(pmacct)
command -v nfdump >/dev/null || need_apt+=(nfdump)
command -v sfcapd >/dev/null || need_apt+=(nfdump-sflow)
# A Java runtime for PySpark: Spark (parquet-mr) is the third reader of our
# Parquet (tests/parquet_sink.rs).
command -v java >/dev/null || need_apt+=(default-jre-headless)
# Chromium renders the status page headless (tests/status_views.rs).
command -v chromium >/dev/null || need_apt+=(chromium)
# tmux: a real terminal for the progress-bar and `spillway top` tests.
command -v tmux >/dev/null || need_apt+=(tmux)
# net-snmp's agent and tools: the SNMP polling tests run their own snmpd.
command -v snmpd >/dev/null || need_apt+=(snmpd)
command -v snmpbulkwalk >/dev/null || need_apt+=(snmp)
# nftables and conntrack: the kernel L4 balancer of the fleet tests
# (TOOLCHAIN.md): a jhash DNAT in front of several collectors, and conntrack
# to forget stickiness at a scale event.
command -v nft >/dev/null || need_apt+=(nftables)
command -v conntrack >/dev/null || need_apt+=(conntrack)
# Debian's rustc-web builds the WebAssembly test plugins offline (TOOLCHAIN.md).
for p in rustc-web cargo-web rust-web-src lld-22 wasi-libc; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
# tansu: the Kafka-protocol broker of the Kafka tests, built from crates.io
# once (its libsql storage needs cmake and libclang to build).
need_tansu=""
if ! command -v tansu >/dev/null; then
  need_tansu=1
  for p in cmake clang libclang-dev; do dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p"); done
fi
if ((${#need_apt[@]})); then
  step "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
if [ -n "$need_tansu" ]; then
  step "building the tansu broker from crates.io (once; ~20 min on 2 cores)"
  # Not with default features: those store nothing. Its own target dir.
  env -u CARGO_TARGET_DIR cargo install --locked tansu --version 0.6.0 --features dynostore,libsql
fi

# --- Python: independent readers of our output -----------------------------
# pyarrow, DuckDB and PySpark read our Parquet; kafka-python (a pure-Python client,
# with lz4/zstandard for compressed batches) reads our Kafka topics, and
# grpcio-tools' protoc compiles docs/flow.proto to decode our protobuf;
# mmdb-writer writes the geoip tests' databases and maxminddb (MaxMind's
# own reader) is the reference that reads them.
venv="$peers/venv"
py_mods="pyarrow, duckdb, pyspark, kafka, lz4, zstandard, grpc_tools, mmdb_writer, maxminddb"
if ! "$venv/bin/python" -c "import $py_mods" 2>/dev/null; then
  step "installing Python test readers into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check pyarrow duckdb pyspark kafka-python lz4 zstandard \
    grpcio-tools mmdb-writer maxminddb
fi
export SPILLWAY_PYTHON="$venv/bin/python"

# --- Rust ------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the SDK (its own workspace): fmt, clippy, unit tests and doc-tests, natively"
(cd sdk && cargo fmt --all -- --check && cargo clippy --workspace --all-targets --locked -- -D warnings \
  && cargo test --workspace --locked --quiet)

step "cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
