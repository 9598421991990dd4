# Sourced by up.sh and scripts/test.sh: makes sure PostgreSQL, Redis and RabbitMQ answer on their local
# ports, starting an installed-but-stopped one, installing a missing one with apt-get where it
# can (Debian/Ubuntu, as root), and otherwise stopping with what to install.

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do port_open "$port" && return 0; sleep 1; done
  echo "error: $name did not start listening on 127.0.0.1:$port" >&2
  exit 1
}

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing $*"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "error: $1 is not installed and cannot be installed here; install it ($*) and run again" >&2
    exit 1
  fi
}

ensure_postgres() {
  port_open 5432 && return 0
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  echo "==> starting PostgreSQL"
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_port PostgreSQL 5432
}

ensure_redis() {
  port_open 6379 && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  echo "==> starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port Redis 6379
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  echo "==> starting RabbitMQ"
  rabbitmq-server -detached
  wait_port RabbitMQ 5672
}

ensure_services() {
  ensure_postgres
  ensure_redis
  ensure_rabbitmq
}
