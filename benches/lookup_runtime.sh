#!/usr/bin/env bash
# The runtime with lookups in its feature stage: the fraud example (model, spec, stream)
# through `streamscore bench --feature-spec`, stream mode, one producer, sets of 256
# (`--submit-batch`), against the same spec with its `since_last` feature read instead from
# (a) a static CSV table and (b) Redis, with a warm cache (TTL 60 s: after the first batches
# every card is cached) and (c) Redis with a 1 ms TTL (a pipelined round trip nearly every
# batch). The model keeps its 15 inputs, so it scores the lookup's value where it was trained
# on `since_last`: the scores mean nothing, and the cost of scoring does not depend on them.
# Each configuration RUNS times (default 3), alternating, 4 s each; prints the medians of
# events/s, p99 end to end, the feature stage's ns per event and the lookups' round-trip p99
# (from LookupCounters' log2 histogram: the top of its bucket, within a factor of two).
#
# benches/lookup_runtime.sh [RUNS]   (scripts/redis.sh installs redis-server)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
scripts/redis.sh >/dev/null
cargo build --release --quiet --features redis --bin streamscore
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no >"$DIR/redis.log" 2>&1 &
RPID=$!
trap 'kill $RPID 2>/dev/null; rm -rf "$DIR"' EXIT
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.05; done
python3 - "$DIR" "$PORT" <<'EOF'
import re, subprocess, sys
d, port = sys.argv[1], sys.argv[2]
cards = range(300)  # the stream's cards are 0..299
subprocess.run(["redis-cli", "-p", port], check=True, stdout=subprocess.DEVNULL, text=True,
               input="".join(f"HSET card:{c} limit {100 + 7 * c}\n" for c in cards))
with open(f"{d}/limits.csv", "w") as f:
    f.write("card,limit\n" + "".join(f"{c},{100 + 7 * c}\n" for c in cards))
spec = open("examples/fraud/spec.toml").read()
feature = '[[feature]]\nname = "since_last"\nop = "since_last"\n'
assert feature in spec
lookup = '[[feature]]\nname = "card_limit"\nop = "lookup"\ntable = "card"\nfield = "limit"\n'
tables = {
    "csv": f'[[lookup]]\nname = "card"\ncsv = "{d}/limits.csv"\nfields = ["limit"]\n',
    "redis_warm": f'[[lookup]]\nname = "card"\nredis = "redis://127.0.0.1:{port}"\n'
                  'fields = ["limit"]\ncache_ttl = "60s"\n',
    "redis_1ms": f'[[lookup]]\nname = "card"\nredis = "redis://127.0.0.1:{port}"\n'
                 'fields = ["limit"]\ncache_ttl = "1ms"\n',
}
open(f"{d}/plain.toml", "w").write(spec)
for name, table in tables.items():
    # The lookup table goes before the first feature; the feature where since_last was.
    text = spec.replace(feature, lookup).replace("[[feature]]", table + "\n[[feature]]", 1)
    open(f"{d}/{name}.toml", "w").write(text)
EOF
for run in $(seq "$RUNS"); do
  for variant in plain csv redis_warm redis_1ms; do
    ./target/release/streamscore bench --model examples/fraud/model.txt \
      --feature-spec "$DIR/$variant.toml" --events examples/fraud/stream.csv \
      --mode stream --submit-batch 256 --duration 4 --json |
      python3 -c "import json, sys; v = json.loads(sys.stdin.read()); v['variant'] = '$variant'; print(json.dumps(v))" \
      >>"$DIR/runs.jsonl"
  done
done
python3 - "$DIR/runs.jsonl" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'variant':<11} {'events/s':>10} {'p99_us':>8} {'stage_ns':>9} {'lookup_p99_us':>14} {'round_trips':>12} {'lost':>5}  runs (events/s)")
for variant in ["plain", "csv", "redis_warm", "redis_1ms"]:
    rs = [r for r in runs if r["variant"] == variant]
    med = lambda f: statistics.median(f(r) for r in rs)
    lk = lambda r: r.get("lookups", {}).get("card", {})
    print(f"{variant:<11} {med(lambda r: r['rows_per_sec']):>10.0f} {med(lambda r: r['latency_us']['p99']):>8.0f} "
          f"{med(lambda r: r['ns_per_event']['prepare']):>9.0f} "
          f"{med(lambda r: lk(r).get('round_trip_p99_us', 0)):>14.0f} "
          f"{med(lambda r: lk(r).get('round_trips', 0)):>12.0f} {max(r['lost'] for r in rs):>5}  "
          + ", ".join(f"{r['rows_per_sec'] / 1e6:.2f}M" for r in rs))
    failed = sum(lk(r).get("failed", 0) for r in rs)
    if failed or any(r["scored"] != r["accepted"] for r in rs):
        sys.exit(f"{variant}: {failed} failed lookups, or events not scored")
EOF
