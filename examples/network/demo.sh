#!/usr/bin/env bash
# make demo, the network part: alice sends scripts to bob's worker over HTTP/2, bob's owner
# updates bob's logic (the `inbox` module) remotely while the worker keeps serving, and carol,
# whose key lives under her own root, delivers through bob's published `inbox::deliver` (which
# runs with bob's rights) while her own fs::write into bob's inbox is denied.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
peerbox="${PEERBOX:-peerbox}"
root="$(mktemp -d)"
carol_root="$(mktemp -d)"   # carol's own machine: bob knows her only through his peers.toml
server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server"; wait "$server" 2>/dev/null
        echo "worker stopped cleanly (SIGTERM)"
    fi
    rm -rf "$root" "$carol_root"
}
trap cleanup EXIT

# bold commands on a terminal only: no escape codes in logs or pipes, none with NO_COLOR set
# (https://no-color.org)
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
say() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }

"$peerbox" init alice --root "$root" >/dev/null
"$peerbox" init bob --root "$root" >/dev/null
"$peerbox" init carol --root "$carol_root" >/dev/null
say 'carol_did=$(peerbox peers show carol --did --root CAROL_ROOT)   (her did, for scripts)'
carol_did="$("$peerbox" peers show carol --did --root "$carol_root")"
echo "$carol_did"
say "peerbox directory add carol DID --root R   (carol's key lives under her own root; no URL: she only calls)"
"$peerbox" directory add carol "$carol_did" --root "$root"
cp "$here/bob-policy.toml" "$root/peers/bob/policy.toml"
mkdir -p "$root/peers/bob/files/private"
echo "dear diary" > "$root/peers/bob/files/private/diary.txt"
say "peerbox peers --root R"
"$peerbox" peers --root "$root"
say "peerbox policy check bob"
"$peerbox" policy check bob --root "$root"
say "peerbox logic set bob inbox inbox-v1.rhai   (bob's own inbox module, extending the built-in one)"
"$peerbox" logic set bob inbox "$here/inbox-v1.rhai" --root "$root"
say "peerbox logic list bob"
"$peerbox" logic list bob --root "$root"

say "peerbox serve --root R --all --listen 127.0.0.1:0   (a shared worker, in the background)"
"$peerbox" serve --root "$root" --all --listen 127.0.0.1:0 --port-file "$root/port" &
server=$!
for _ in $(seq 1 100); do [ -s "$root/port" ] && break; sleep 0.1; done
port="$(cat "$root/port")"
say "peerbox directory add bob http://127.0.0.1:PORT   (bob is local: his did is looked up)"
"$peerbox" directory add bob "http://127.0.0.1:$port" --root "$root"
bob_did="$("$peerbox" peers show bob --did --root "$root")"
"$peerbox" directory add bob "$bob_did" "http://127.0.0.1:$port" --root "$carol_root" >/dev/null

say "peerbox send --from alice --to bob note.rhai --param text=hi   (allowed)"
"$peerbox" send --from alice --to bob "$here/note.rhai" --param text=hi --root "$root"
echo "(exit $?)"
say "peerbox send --from alice --to bob peek.rhai   (reads bob's private file: denied)"
"$peerbox" send --from alice --to bob "$here/peek.rhai" --root "$root"
echo "(exit $?)"
say "peerbox send --from alice --to bob spin.rhai   (loops forever: stopped by its limit)"
"$peerbox" send --from alice --to bob "$here/spin.rhai" --root "$root"
echo "(exit $?)"

say "peerbox logic push --from bob --to bob inbox inbox-v2.rhai   (bob's owner updates bob's logic remotely)"
"$peerbox" logic push --from bob --to bob inbox "$here/inbox-v2.rhai" --root "$root"
echo "(exit $?)"
say "peerbox logic show bob inbox --from bob   (the owner reads what the worker now runs)"
"$peerbox" logic show bob inbox --from bob --root "$root" | head -3
say "peerbox logic push --from alice --to bob inbox inbox-v2.rhai   (alice may not change bob's logic)"
"$peerbox" logic push --from alice --to bob inbox "$here/inbox-v2.rhai" --root "$root"
echo "(exit $?)"
say "peerbox send --from alice --to bob note.rhai --param text=again   (handled by inbox v2, no restart)"
"$peerbox" send --from alice --to bob "$here/note.rhai" --param text=again --root "$root"
echo "(exit $?)"

say "peerbox logic list bob   (inbox v2 publishes deliver: who may call it)"
"$peerbox" logic list bob --root "$root"
say "peerbox call --from carol --to bob inbox::deliver --arg text='hi from carol'   (from carol's own root: runs with bob's rights)"
"$peerbox" call --from carol --to bob inbox::deliver --arg "text=hi from carol" --root "$carol_root"
echo "(exit $?)"
say "peerbox send --from carol --to bob write-inbox.rhai   (carol writes into bob's inbox herself: denied)"
"$peerbox" send --from carol --to bob "$here/write-inbox.rhai" --root "$carol_root"
echo "(exit $?)"

say "peerbox logic history bob inbox; peerbox logic verify bob"
"$peerbox" logic history bob inbox --root "$root"
"$peerbox" logic verify bob --root "$root"
say "bob's inbox"
for f in "$root/peers/bob/files/inbox/"*; do echo "$(basename "$f"): $(cat "$f")"; done
