#!/usr/bin/env bash
# The JVM binding: builds libstreamscore_c with the JNI methods (feature jni), compiles the
# classes with plain javac (OpenJDK 17; no Maven, no dependencies), packs
# target/java/streamscore-native.jar (Native and the exceptions: the parent loader's) and
# target/java/streamscore.jar (Model, Runtime), and runs the suite
# (test/io/streamscore/test/Suite.java: against the Rust scorer's bits, from `streamscore
# score`), then the example. Installs openjdk-17-jdk-headless
# from Debian where javac is missing.
#   crates/streamscore-capi/java/run.sh          build, test, example
#   crates/streamscore-capi/java/run.sh bench    build, then the JNI overhead bench (release)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"
if ! command -v javac > /dev/null; then
  echo "installing openjdk-17-jdk-headless (Debian)"
  (apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless) > /dev/null 2>&1 \
    || sudo sh -c 'apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless' > /dev/null
fi
profile=debug
flags=()
if [ "${1:-}" = bench ]; then profile=release flags=(--release); fi
cargo build --quiet -p streamscore-capi --features jni "${flags[@]}"
lib="$root/target/$profile/libstreamscore_c.so"
out="$root/target/java"
rm -rf "$out" && mkdir -p "$out/native" "$out/api" "$out/test" "$out/examples"
javac --release 17 -Xlint:all -Werror -d "$out/native" "$here"/native/io/streamscore/*.java
javac --release 17 -Xlint:all -Werror -cp "$out/native" -d "$out/api" "$here"/src/io/streamscore/*.java
jar --create --file "$out/streamscore-native.jar" -C "$out/native" .
jar --create --file "$out/streamscore.jar" -C "$out/api" .
cp="$out/streamscore-native.jar:$out/streamscore.jar"
javac --release 17 -Xlint:all -Werror -cp "$cp" -d "$out/test" "$here"/test/io/streamscore/test/*.java
javac --release 17 -Xlint:all -Werror -cp "$cp" -d "$out/examples" "$here"/examples/*.java
if [ "${1:-}" = bench ]; then
  exec java -Dstreamscore.library="$lib" -cp "$cp:$out/test" io.streamscore.test.Bench \
    models/golden/lgb_binary/model.txt "${2:-7}"
fi
# The Rust scorer's answers for the suite to match bit for bit: `streamscore score` prints each
# f32 as its shortest round-trip decimal.
cargo build --quiet --bin streamscore
mkdir -p "$out/rust"
for dir in models/golden/*/; do
  name=$(basename "$dir")
  model="$dir/model.txt"; [ -f "$model" ] || model="$dir/model.json"
  target/debug/streamscore score --model "$model" --input "$dir/input.csv" > "$out/rust/$name.pred.csv"
  target/debug/streamscore score --model "$model" --input "$dir/input.csv" --raw > "$out/rust/$name.raw.csv"
done
java -Xcheck:jni -Dstreamscore.library="$lib" -cp "$cp:$out/test" io.streamscore.test.Suite \
  "$root" "$out/streamscore.jar" "$out/test" "$out/rust"
java -Dstreamscore.library="$lib" -cp "$cp:$out/examples" FraudMap examples/fraud
