#!/usr/bin/env bash
# The compatibility matrix: real Kafka clients (Python confluent-kafka, kafka-python 3.x and
# 2.3, aiokafka, Debian's kcat, kafkajs) produce, consume and use a consumer group against a
# fresh `strand serve`, and the admin clients of confluent-kafka and kafka-python describe
# topics, configs, groups, records and log dirs (tests/compat/admin_clients.py), and two
# stream-processing frameworks, quixstreams and faust-streaming, recover their state from a
# compacted changelog after a restart (tests/compat/frameworks.py). Installs the clients
# under target/compat, in three virtualenvs: venv (the latest clients), venv-kp23
# (kafka-python 2.3) and venv-fw (the frameworks: quixstreams pins confluent-kafka below the
# latest). Prints one line per client and case and `N passed, M failed`; exits 1 if any
# case failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
compat=$root/target/compat
mkdir -p "$compat"

echo "== installing clients"
venv() {
    # venv NAME PACKAGE...: a virtualenv target/compat/NAME holding these packages.
    local dir=$compat/$1
    shift
    if [ ! -x "$dir/bin/python" ]; then
        python3 -m venv "$dir" || return 1
    fi
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
}
# The installs are independent: side by side they take about the time of the longest.
venv venv confluent-kafka kafka-python aiokafka &
main_install=$!
venv venv-kp23 'kafka-python==2.3.*' &
kp23_install=$!
venv venv-fw quixstreams faust-streaming &
fw_install=$!
installed=true
for install in $main_install $kp23_install $fw_install; do
    wait "$install" || installed=false
done
$installed || exit 1
if [ ! -d "$compat/node/node_modules/kafkajs" ]; then
    npm install --silent --no-audit --no-fund --prefix "$compat/node" kafkajs@2 || exit 1
fi
if ! command -v kcat >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq kcat) >/dev/null || exit 1
fi
# STRAND_BIN runs a prebuilt broker instead of building one.
strand_bin=${STRAND_BIN:-$root/target/debug/strand}
if [ -z "${STRAND_BIN:-}" ]; then
    cargo build --quiet -p strand || exit 1
fi

scratch=$(mktemp -d)
data=$scratch/data
mkdir -p "$data"
# The frameworks' changelogs get compacted while their cases run: the cleaner runs on every
# housekeeping tick, made frequent here (the default is 30 s).
config=$scratch/strand.toml
echo 'housekeeping_interval_ms = 500' > "$config"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bootstrap=127.0.0.1:$port
"$strand_bin" serve --listen "$bootstrap" --data-dir "$data" --config "$config" \
    --metrics none > "$compat/broker.log" 2>&1 &
broker=$!
cleanup() {
    kill "$broker" 2>/dev/null
    wait "$broker" 2>/dev/null
    rm -rf "$scratch"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$broker" 2>/dev/null; then
        echo "the broker exited; see $compat/broker.log"
        exit 1
    fi
    sleep 0.1
done

results=$compat/results.txt
: > "$results"
run() {
    # A client's cases, bounded in time; its lines go to the results.
    timeout 120 "$@" 2>>"$compat/clients.log" | tee -a "$results"
}

echo "== cases (broker at $bootstrap)"
for client in confluent-kafka kafka-python aiokafka; do
    run "$compat/venv/bin/python" tests/compat/python_clients.py "$bootstrap" "$client"
done
run "$compat/venv-kp23/bin/python" tests/compat/python_clients.py "$bootstrap" kafka-python kafka-python-2.3
for client in confluent-kafka kafka-python; do
    (cd tests/compat && run "$compat/venv/bin/python" admin_clients.py "$bootstrap" "$client")
done
(cd tests/compat && run "$compat/venv-kp23/bin/python" admin_clients.py "$bootstrap" kafka-python kafka-python-2.3)
NODE_PATH=$compat/node/node_modules run node tests/compat/kafkajs.cjs "$bootstrap"
run bash tests/compat/kcat.sh "$bootstrap" "$strand_bin"
for framework in quixstreams faust; do
    run "$compat/venv-fw/bin/python" tests/compat/frameworks.py "$bootstrap" "$framework"
done

expect() {
    if ! grep -q "^$1 $2 " "$results"; then
        echo "$1 $2 FAIL no result" | tee -a "$results"
    fi
}
for client in confluent-kafka kafka-python kafka-python-2.3 aiokafka kafkajs kcat; do
    for case in produce consume group; do
        expect "$client" "$case"
    done
done
for client in confluent-kafka kafka-python kafka-python-2.3; do
    for case in admin-topics admin-configs admin-groups admin-records; do
        expect "$client" "$case"
    done
done
for client in kafka-python kafka-python-2.3; do
    expect "$client" admin-logdirs
done
expect quixstreams stateful-restart
expect faust table-restart
passed=$(grep -c ' PASS' "$results")
failed=$(grep -c ' FAIL' "$results")
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
