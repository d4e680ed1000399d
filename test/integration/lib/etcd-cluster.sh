#!/usr/bin/env bash
# Starts a three-member etcd cluster on free loopback ports under a temp dir.
# Usage: source it, then call etcd_cluster_start DIR; it sets ETCD_ENDPOINTS
# (comma-separated host:port list), ETCD_PIDS (array, member order) and
# ETCD_CLIENT_PORTS. etcd_cluster_stop kills every member it started.
free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

etcd_cluster_start() {
  local dir=$1 i cluster="" ports=() token="lk-$$-$RANDOM"
  ETCD_PIDS=()
  ETCD_CLIENT_PORTS=()
  for i in 0 1 2; do
    ETCD_CLIENT_PORTS[$i]=$(free_port)
    ports[$i]=$(free_port)
    cluster+="m$i=http://127.0.0.1:${ports[$i]},"
  done
  cluster=${cluster%,}
  for i in 0 1 2; do
    etcd --name "m$i" --data-dir "$dir/m$i" \
      --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}" \
      --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${ports[$i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${ports[$i]}" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "$token" \
      --heartbeat-interval 100 --election-timeout 1000 \
      >"$dir/m$i.log" 2>&1 </dev/null &
    ETCD_PIDS[$i]=$!
  done
  ETCD_ENDPOINTS="127.0.0.1:${ETCD_CLIENT_PORTS[0]},127.0.0.1:${ETCD_CLIENT_PORTS[1]},127.0.0.1:${ETCD_CLIENT_PORTS[2]}"
  export ETCD_ENDPOINTS
  local t
  for t in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:${ETCD_CLIENT_PORTS[0]}/health" 2>/dev/null | grep -q '"health":"true"'; then return 0; fi
    sleep 0.2
  done
  echo "etcd cluster did not become healthy; logs in $dir" >&2
  return 1
}

etcd_cluster_stop() {
  local p
  for p in "${ETCD_PIDS[@]}"; do
    kill -CONT "$p" 2>/dev/null || true
    kill -KILL "$p" 2>/dev/null || true
  done
  for p in "${ETCD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
