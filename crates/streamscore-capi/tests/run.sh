#!/usr/bin/env bash
# The C ABI's C suite: builds libstreamscore_c, compiles tests/c/suite.c with the system C
# compiler against the committed header (-Wall -Wextra -Werror, C11), runs it on every golden
# model (linked against the shared library, then the static one), then once more under
# valgrind (no leak, no invalid access: any error fails).
# Installs valgrind from Debian's packages where it is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
if ! command -v valgrind > /dev/null; then
  echo "installing valgrind (Debian)"
  (apt-get update -qq && apt-get install -y -qq valgrind) > /dev/null 2>&1 \
    || sudo sh -c 'apt-get update -qq && apt-get install -y -qq valgrind' > /dev/null
fi
cargo build --quiet -p streamscore-capi
lib="$root/target/debug"
bin="$root/target/c-suite"
cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -g -O1 \
  -I crates/streamscore-capi/include crates/streamscore-capi/tests/c/suite.c \
  -L "$lib" -lstreamscore_c -lpthread -lm -Wl,-rpath,"$lib" -o "$bin"
golden=(models/golden/*/)
first=models/golden/lgb_binary other=models/golden/lgb_deep swap=models/golden/lgb_binary_sigmoid
"$bin" "$first" "$other" "$swap" "${golden[@]%/}"
# The static library too: the same suite linked against libstreamscore_c.a.
cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -O1 \
  -I crates/streamscore-capi/include crates/streamscore-capi/tests/c/suite.c \
  "$lib/libstreamscore_c.a" -lpthread -ldl -lm -o "$bin-static"
"$bin-static" "$first" "$other" "$swap" "${golden[@]%/}" | tail -1
echo "(statically linked)"
# Under valgrind: the calls and misuse cases on two golden models (the whole set is slow there).
valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --show-leak-kinds=definite,indirect \
  "$bin" "$first" "$other" "$swap" models/golden/lgb_binary models/golden/xgb_multiclass
echo "c suite under valgrind: clean"
