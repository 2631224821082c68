#!/usr/bin/env bash
# Times C calls from C (tests/c/bench.c) against the release library, then the Rust side of the
# same calls (benches/overhead.rs), one after the other:
#   crates/streamscore-capi/tests/bench.sh [ROUNDS]
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
cargo build --quiet --release -p streamscore-capi
lib="$root/target/release"
cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -O2 \
  -I crates/streamscore-capi/include crates/streamscore-capi/tests/c/bench.c \
  -L "$lib" -lstreamscore_c -Wl,-rpath,"$lib" -o target/c-bench
target/c-bench models/golden/lgb_binary/model.txt "${1:-7}"
cargo bench --quiet -p streamscore-capi --bench overhead 2>&1 | grep -E "^overhead|time:"
