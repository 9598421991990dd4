#!/usr/bin/env bash
# A local high-availability stack beside the single-node services (which it never touches):
#   - three RabbitMQ nodes joined in one cluster (quorum queues replicate across them);
#   - a PostgreSQL primary and a streaming standby (pg_basebackup -R), synchronous by default;
#   - a Redis primary, a replica and three Sentinels (master name "dialfleet").
# Every process has its own ports and data under HA_STATE (default /tmp/dialfleet-ha) and its pid
# in $HA_STATE/pids/; deploy/local/ha-down.sh stops exactly those. Only Debian's packages are
# used (rabbitmq-server, postgresql-15, redis-server). Prints the endpoints, and writes them to
# $HA_STATE/endpoints.env as the roles' variables (source it before starting a role).
#
# Settings (environment):
#   HA_STATE       state directory (default /tmp/dialfleet-ha); must not exist or be a previous
#                  stack's, already stopped
#   HA_PORT_BASE   ports are BASE+n (default 25700): PostgreSQL +10 primary, +11 standby;
#                  Redis +20 primary, +21 replica; Sentinels +30..+32; AMQP +40..+42;
#                  Erlang distribution +50..+52
#   HA_PG_SYNC     on (default): synchronous_standby_names='standby1', synchronous_commit=on,
#                  so a commit is acknowledged only once the standby has flushed it;
#                  off: asynchronous streaming (a failover may lose the last commits)
#   HA_SKIP        comma list of parts not to start: rabbitmq, postgres, redis
set -euo pipefail

state="${HA_STATE:-/tmp/dialfleet-ha}"
base="${HA_PORT_BASE:-25700}"
sync="${HA_PG_SYNC:-on}"
skip=",${HA_SKIP:-},"
pgbin="${HA_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}"
rabbit_bin=/usr/lib/rabbitmq/bin
cookie="dialfleet-ha-cookie"

mkdir -p "$state/pids" "$state/logs"
state="$(cd "$state" && pwd)"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 120); do port_open "$port" && return 0; sleep 0.5; done
  echo "error: $name did not listen on 127.0.0.1:$port (logs: $state/logs/)" >&2
  exit 1
}
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
for port in $((base + 10)) $((base + 11)) $((base + 20)) $((base + 21)) $((base + 30)) \
  $((base + 40)) $((base + 41)) $((base + 42)); do
  if port_open "$port"; then
    echo "error: port $port is taken (another HA stack? deploy/local/ha-down.sh, or set HA_PORT_BASE)" >&2
    exit 1
  fi
done

# --- RabbitMQ: three nodes, one cluster ---------------------------------------------------------
rabbit_env() { # node number -> the environment of that node's server and rabbitmqctl
  local n=$1 dir="$state/rabbitmq/n$1"
  echo HOME="$state/rabbitmq/home" \
    RABBITMQ_NODENAME="dfha$n@localhost" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=$((base + 39 + n)) \
    RABBITMQ_DIST_PORT=$((base + 49 + n)) \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_PID_FILE="$dir/beam.pid" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$state/rabbitmq/enabled_plugins" \
    RABBITMQ_CONF_ENV_FILE="$state/rabbitmq/rabbitmq-env.conf" \
    ERL_EPMD_ADDRESS=127.0.0.1
}
rabbitctl() { # node number, rabbitmqctl arguments
  local n=$1; shift
  env $(rabbit_env "$n") "$rabbit_bin/rabbitmqctl" -n "dfha$n@localhost" "$@"
}
start_rabbitmq() {
  mkdir -p "$state/rabbitmq/home"
  printf '%s' "$cookie" >"$state/rabbitmq/home/.erlang.cookie"
  chmod 400 "$state/rabbitmq/home/.erlang.cookie"
  echo '[].' >"$state/rabbitmq/enabled_plugins"
  echo 'ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"' >"$state/rabbitmq/rabbitmq-env.conf"
  for n in 1 2 3; do
    local dir="$state/rabbitmq/n$n"
    mkdir -p "$dir/mnesia" "$dir/log"
    cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$((base + 39 + n))
loopback_users = none
# A node cut off from the majority stops serving rather than diverge.
cluster_partition_handling = pause_minority
EOF
    echo "==> starting RabbitMQ dfha$n@localhost on 127.0.0.1:$((base + 39 + n))"
    env $(rabbit_env "$n") nohup "$rabbit_bin/rabbitmq-server" >>"$state/logs/rabbitmq-$n.log" 2>&1 &
    echo $! >"$state/pids/rabbitmq-$n.script.pid"
  done
  for n in 1 2 3; do
    wait_port "RabbitMQ node $n" $((base + 39 + n))
    cp "$state/rabbitmq/n$n/beam.pid" "$state/pids/rabbitmq-$n.pid"
  done
  for n in 2 3; do
    echo "==> joining dfha$n@localhost to dfha1@localhost"
    rabbitctl "$n" stop_app >/dev/null
    rabbitctl "$n" join_cluster dfha1@localhost >/dev/null
    rabbitctl "$n" start_app >/dev/null
  done
  rabbitctl 1 await_online_nodes 3 >/dev/null 2>&1 || true
  wait_port "RabbitMQ node 2" $((base + 41))
  wait_port "RabbitMQ node 3" $((base + 42))
}

# --- PostgreSQL: a primary and a streaming standby ----------------------------------------------
pg_start() { # name port
  local name=$1 port=$2
  as_postgres "$pgbin/pg_ctl" -D "$state/postgres/$name" -w -t 60 -l "$state/postgres/$name.log" \
    -o "-p $port -k $state/postgres -c listen_addresses=127.0.0.1" start >/dev/null
  head -n 1 "$state/postgres/$name/postmaster.pid" >"$state/pids/postgres-$name.pid"
}
start_postgres() {
  mkdir -p "$state/postgres"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$state/postgres"
  local primary="$state/postgres/primary" standby="$state/postgres/standby"
  echo "==> initdb $primary"
  as_postgres "$pgbin/initdb" -D "$primary" -A trust -U postgres >/dev/null
  cat >>"$primary/postgresql.conf" <<EOF
# dialfleet HA stack (deploy/local/ha.sh)
wal_level = replica
max_wal_senders = 10
wal_keep_size = 256MB
hot_standby = on
max_connections = 300
EOF
  if [ "$sync" = on ]; then
    printf "synchronous_standby_names = 'standby1'\nsynchronous_commit = on\n" >>"$primary/postgresql.conf"
  else
    printf "synchronous_standby_names = ''\n" >>"$primary/postgresql.conf"
  fi
  echo "host replication postgres 127.0.0.1/32 trust" >>"$primary/pg_hba.conf"
  echo "==> starting the PostgreSQL primary on 127.0.0.1:$((base + 10)) (synchronous: $sync)"
  pg_start primary $((base + 10))
  echo "==> pg_basebackup -R into $standby"
  as_postgres "$pgbin/pg_basebackup" -h 127.0.0.1 -p $((base + 10)) -U postgres -D "$standby" -R -X stream >/dev/null
  # The standby names itself to the primary, and once promoted waits for no standby of its own
  # (it has none): a promoted server that kept 'standby1' would block every commit.
  cat >>"$standby/postgresql.auto.conf" <<EOF
primary_conninfo = 'host=127.0.0.1 port=$((base + 10)) user=postgres application_name=standby1'
synchronous_standby_names = ''
EOF
  echo "==> starting the PostgreSQL standby on 127.0.0.1:$((base + 11))"
  pg_start standby $((base + 11))
  for _ in $(seq 1 60); do
    [ "$(as_postgres "$pgbin/psql" -h 127.0.0.1 -p $((base + 10)) -U postgres -Atc \
      "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" = 1 ] && return 0
    sleep 0.5
  done
  echo "error: the standby is not streaming (logs: $state/postgres/*.log)" >&2
  exit 1
}

# --- Redis: a primary, a replica and three Sentinels --------------------------------------------
start_redis() {
  mkdir -p "$state/redis"
  local p=$((base + 20)) r=$((base + 21))
  echo "==> starting Redis primary 127.0.0.1:$p and replica 127.0.0.1:$r"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$p" --save "" --appendonly no \
    --dir "$state/redis" --pidfile "$state/pids/redis-primary.pid" --logfile "$state/logs/redis-primary.log"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$r" --save "" --appendonly no \
    --dir "$state/redis" --pidfile "$state/pids/redis-replica.pid" --logfile "$state/logs/redis-replica.log" \
    --replicaof 127.0.0.1 "$p"
  wait_port "Redis primary" "$p"
  wait_port "Redis replica" "$r"
  for n in 0 1 2; do
    local s=$((base + 30 + n)) conf="$state/redis/sentinel-$n.conf"
    cat >"$conf" <<EOF
port $s
bind 127.0.0.1
daemonize yes
pidfile $state/pids/redis-sentinel-$n.pid
logfile $state/logs/redis-sentinel-$n.log
dir $state/redis
sentinel monitor dialfleet 127.0.0.1 $p 2
sentinel down-after-milliseconds dialfleet 2000
sentinel failover-timeout dialfleet 10000
sentinel parallel-syncs dialfleet 1
EOF
    redis-server "$conf" --sentinel
    wait_port "Sentinel $n" "$s"
  done
}

case "$skip" in *,rabbitmq,*) ;; *) start_rabbitmq ;; esac
case "$skip" in *,postgres,*) ;; *) start_postgres ;; esac
case "$skip" in *,redis,*) ;; *) start_redis ;; esac

amqp="amqp://guest:guest@127.0.0.1:$((base + 40))/%2f,amqp://guest:guest@127.0.0.1:$((base + 41))/%2f,amqp://guest:guest@127.0.0.1:$((base + 42))/%2f"
pg_hosts="127.0.0.1:$((base + 10)),127.0.0.1:$((base + 11))"
sentinels="redis://127.0.0.1:$((base + 30)),redis://127.0.0.1:$((base + 31)),redis://127.0.0.1:$((base + 32))"
cat >"$state/endpoints.env" <<EOF
# The roles' variables for this HA stack (deploy/local/ha.sh); database "dialfleet".
HA_STATE=$state
HA_PORT_BASE=$base
HA_PG_SYNC=$sync
HA_PG_BIN=$pgbin
HA_PG_PRIMARY_PORT=$((base + 10))
HA_PG_STANDBY_PORT=$((base + 11))
HA_REDIS_PRIMARY_PORT=$((base + 20))
HA_REDIS_REPLICA_PORT=$((base + 21))
AMQP_URL=$amqp
DATABASE_URL=postgres://postgres@$pg_hosts/dialfleet?target_session_attrs=read-write
REDIS_SENTINELS=$sentinels
REDIS_SENTINEL_MASTER=dialfleet
EOF
echo
echo "HA stack up (state: $state; stop with: HA_STATE=$state deploy/local/ha-down.sh)"
echo "  RabbitMQ   AMQP_URL=$amqp"
echo "             nodes dfha1..3@localhost; rabbitmqctl: HOME=$state/rabbitmq/home"
echo "  PostgreSQL DATABASE_URL=postgres://postgres@$pg_hosts/dialfleet?target_session_attrs=read-write"
echo "             primary :$((base + 10)), standby :$((base + 11)), synchronous: $sync"
echo "  Redis      REDIS_SENTINELS=$sentinels REDIS_SENTINEL_MASTER=dialfleet"
echo "             primary :$((base + 20)), replica :$((base + 21))"
echo "  (all of it in $state/endpoints.env)"
