#!/usr/bin/env bash
# Compatibility cases for kcat (Debian's package, librdkafka 2.0): produce, consume, and a
# consumer group whose commits `strand group describe` then shows.
set -uo pipefail
bootstrap=$1
strand=$2
topic=compat-kcat
group=compat-kcat-group
n=200

report() { echo "kcat $1 $2 ${3:-}"; }

if seq 0 $((n - 1)) | awk '{ print "key-" $1 ":value-" $1 }' \
    | kcat -b "$bootstrap" -t "$topic" -P -K: -X acks=all; then
    count=$(kcat -b "$bootstrap" -t "$topic" -C -e -q -f '%o\n' | wc -l)
    [ "$count" -eq "$n" ] && report produce PASS "$count stored" || report produce FAIL "$count stored"
else
    report produce FAIL "kcat exited $?"
fi

expected=$(seq 0 $((n - 1)) | sed 's/^/value-/')
got=$(kcat -b "$bootstrap" -t "$topic" -C -e -q -o beginning -f '%s\n')
[ "$got" = "$expected" ] && report consume PASS || report consume FAIL "$(echo "$got" | wc -l) lines"

timeout 60 kcat -b "$bootstrap" -G "$group" -q -f '%s\n' -c "$n" -X auto.offset.reset=earliest "$topic" \
    > /dev/null 2>&1
current=$("$strand" --bootstrap "$bootstrap" group describe "$group" 2>/dev/null \
    | awk -v t="$topic" '$1 == t && $2 == 0 { print $3 }')
[ "$current" = "$n" ] && report group PASS "committed $current" || report group FAIL "committed ${current:-none}"
