#!/usr/bin/env bash
# What a recovery after a lost journal sends (bench/notes.md, "lost journal"): FILES random files of SIZE bytes in
# 700 folders, mirrored by `tidemark local`; then the journal deleted, CHANGED files rewritten, and the local cloud
# and agent started again. Prints what each journal sent (`tidemark status --json`: message bodies and staged
# objects) once the set is in sync.
# usage: bench/lost-journal.sh REPO WORK PORT [FILES] [SIZE] [CHANGED]
#   e.g. bench/lost-journal.sh "$PWD" /tmp/lj 47811 5000 16384 5
set -euo pipefail
REPO=$1 WORK=$2 PORT=$3 FILES=${4:-5000} SIZE=${5:-16384} CHANGED=${6:-5}
tm() { node "$REPO/agent/cli.ts" "$@"; }
rm -rf "$WORK"
mkdir -p "$WORK/src"
node -e '
const fs = require("node:fs"), crypto = require("node:crypto"), [dir, n, size] = process.argv.slice(1);
for (let i = 0; i < +n; i++) { const d = `${dir}/p${i % 100}/sub${i % 7}`; fs.mkdirSync(d, { recursive: true }); fs.writeFileSync(`${d}/f${i}.bin`, crypto.randomBytes(+size)); }
' "$WORK/src" "$FILES" "$SIZE"
# Runs the local cloud and agent until the set is in sync; prints what its journal sent.
mirror() {
  tm local --port "$PORT" --state "$WORK/state" --source "$WORK/src" --set nm >"$WORK/local-$1.log" 2>&1 &
  local pid=$! start
  start=$(date +%s)
  for _ in $(seq 1 900); do
    if out=$(tm status --json --config "$WORK/state/tidemark.config.json" 2>/dev/null) && node -e 'process.exit(JSON.parse(process.argv[1]).sets[0].inSync ? 0 : 1)' "$out"; then
      echo "$1: $(node -e 'console.log(JSON.stringify(JSON.parse(process.argv[1]).sets[0].sent))' "$out") in $(($(date +%s) - start)) s"
      break
    fi
    sleep 2
  done
  kill "$pid"
  wait "$pid" || true
}
mirror first
rm -f "$WORK"/state/agent/journal.db*
for i in $(seq 11 $((10 + CHANGED))); do head -c "$SIZE" /dev/urandom >"$WORK/src/p$((i % 100))/sub$((i % 7))/f$i.bin"; done
mirror lost-journal
grep -E "compared the source|set recovered" "$WORK/local-lost-journal.log" || true
