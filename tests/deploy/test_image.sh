#!/usr/bin/env bash
# The container image, built and run for real without a Docker engine (docs/deployment.md):
#  1. the base image: `debootstrap --variant=minbase bookworm` from Debian's mirror, given the
#     slim image's apt/dpkg settings, imported into a containers-storage of the test's own under
#     exactly the name compose/Dockerfile's FROM uses (debian:12.7-slim ->
#     docker.io/library/debian:12.7-slim), so that the build pulls nothing (--pull=never);
#  2. `buildah bud --isolation chroot --pull=never -f compose/Dockerfile .` on the unmodified
#     Dockerfile (docker format, which keeps the HEALTHCHECK; layers cached between runs);
#  3. in the image, in a network namespace of the test's: the image's ENTRYPOINT and CMD as its
#     USER (10001:10001) with a configuration mounted where compose mounts it, probing an HTTP
#     server of the test's and a closed port; /metrics scraped from outside the container; the
#     image's HEALTHCHECK command passes while the agent serves and fails once it is stopped;
#  4. the runtime stage holds no compiler, no -dev package and no test server.
# The debootstrap tarball and the storage are kept under $PES_IMAGE_CACHE (default
# /var/cache/pes-agent/image) between runs; delete the directory to start from scratch.
source "$(dirname "$0")/lib.sh"
need buildah
need debootstrap
need ip
need curl
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, buildah, ip netns)"
cd "$PES_SOURCE_DIR"

CACHE="${PES_IMAGE_CACHE:-/var/cache/pes-agent/image}"
mkdir -p "$CACHE"
# A storage of the test's own: nothing here touches images of anyone else on the machine, and the
# cleanup below may prune freely.
RUNROOT="/run/pes-agent-image-test"
bh() { buildah --root "$CACHE/storage" --runroot "$RUNROOT" "$@"; }
IMAGE=localhost/pes-agent:test
BUILD_IMAGE=localhost/pes-agent-build:test

# --- 1. the base image ----------------------------------------------------------------------
# The name as Docker resolves it: debian:12.7-slim is docker.io/library/debian:12.7-slim.
base_name() {
  local ref
  ref=$(sed -n 's/^ARG DEBIAN_IMAGE=//p' compose/Dockerfile)
  [ -n "$ref" ] || fail "compose/Dockerfile has no ARG DEBIAN_IMAGE=..."
  case "$ref" in
    */*/*) echo "$ref" ;;
    */*) echo "docker.io/$ref" ;;
    *) echo "docker.io/library/$ref" ;;
  esac
}

# The settings Debian's official slim images carry (debuerreotype): no documentation, manual
# pages or translations installed, and apt's downloads deleted after each install, so that the
# image size measured here is what `docker build` on the real base gives.
slim_settings() {
  local root=$1
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  # The same suites as the official image: the release, its updates and security updates.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # What the exclusions above would have kept out, had they been there from the start.
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$root/usr/share/man" "$root/usr/share/groff" "$root/usr/share/info" \
    "$root/usr/share/lintian" "$root/usr/share/linda"
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
}

# debootstrap once; the rootfs is kept as a tarball in the cache.
base_tarball() {
  local tar="$CACHE/bookworm-minbase.tar"
  if [ ! -s "$tar" ]; then
    log "debootstrap --variant=minbase bookworm (Debian's mirror; cached in $tar)"
    local root="$CACHE/rootfs.tmp"
    rm -rf "$root"
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian \
      >"$CACHE/debootstrap.log" 2>&1 || fail "debootstrap failed: $(tail -n 5 "$CACHE/debootstrap.log")"
    slim_settings "$root"
    tar -C "$root" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$root"
  fi
  echo "$tar"
}

import_base() {
  local name=$1 tar ctr mnt
  if bh inspect --type image "$name" >/dev/null 2>&1; then
    log "base image $name present in $CACHE/storage"
    return
  fi
  tar=$(base_tarball)
  log "importing $tar as $name"
  ctr=$(bh from --pull=never scratch)
  mnt=$(bh mount "$ctr")
  tar -C "$mnt" --numeric-owner -xpf "$tar"
  bh umount "$ctr" >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd bash --os linux --arch amd64 "$ctr"
  bh commit --quiet --rm "$ctr" "$name" >/dev/null
}

# --- 2. the image ---------------------------------------------------------------------------
# Two invocations, the first stopping after the build stage: both stages end in a tagged image,
# so the layer cache (apt installs, the compile) survives the prune below, and the second
# invocation builds the whole Dockerfile from that cache exactly as a user would.
build_image() {
  local common=(--isolation chroot --pull=never --layers --format docker
    --ignorefile compose/Dockerfile.dockerignore -f compose/Dockerfile)
  log "buildah bud ${common[*]} --target build -t $BUILD_IMAGE ."
  bh bud "${common[@]}" --target build -t "$BUILD_IMAGE" . >"$TMP/build-stage.log" 2>&1 ||
    fail "the build stage failed: $(tail -n 30 "$TMP/build-stage.log")"
  log "buildah bud ${common[*]} -t $IMAGE ."
  bh bud "${common[@]}" -t "$IMAGE" . >"$TMP/build.log" 2>&1 ||
    fail "the image failed to build: $(tail -n 30 "$TMP/build.log")"
  # Older runs' layers (untagged now) go; the cache of this run stays.
  local i
  for ((i = 0; i < 20; i++)); do
    [ -n "$(bh images --filter dangling=true -q)" ] || break
    bh rmi --prune >/dev/null 2>&1 || break
  done
}

# A value of the image's configuration (Docker format) as JSON.
image_config() {
  bh inspect --type image "$IMAGE" | "$PY" -c "import json,sys; c=json.load(sys.stdin)['Docker']['config']; print(json.dumps(c.get('$1')))"
}

# --- 3. the image at work -------------------------------------------------------------------
NS="pes-image-$$"
CTR=""
cleanup() {
  [ -n "$CTR" ] && bh rm "$CTR" >/dev/null 2>&1
  local pid
  for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip netns delete "$NS" 2>/dev/null
  return 0
}
CLEANUP_HOOKS+=(cleanup)

in_ns() { ip netns exec "$NS" "$@"; }
# Runs a command in the working container, in the namespace, as the image's user.
in_image() { in_ns buildah --root "$CACHE/storage" --runroot "$RUNROOT" run --isolation chroot --user 10001:10001 "$@"; }

# The PID of the agent running in the namespace (the container's process, seen from the host).
agent_pid() {
  local pid
  for pid in $(ip netns pids "$NS"); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pes-agent ] && echo "$pid"
  done
}

# The HEALTHCHECK exactly as the image declares it: ["CMD", argv...] or ["CMD-SHELL", "cmd"].
healthcheck() {
  local -a argv
  mapfile -d '' -t argv < <("$PY" -c '
import json, sys
t = json.loads(sys.argv[1])["Test"]
argv = t[1:] if t[0] == "CMD" else ["/bin/sh", "-c", t[1]]
sys.stdout.write("".join(a + "\0" for a in argv))' "$HEALTH")
  in_image "$CTR" -- timeout "$HEALTH_TIMEOUT" "${argv[@]}"
}

# --- 4. what the runtime stage must not hold ------------------------------------------------
check_contents() {
  local found
  found=$(in_ns buildah --root "$CACHE/storage" --runroot "$RUNROOT" run --isolation chroot "$CTR" -- bash -c '
for b in gcc cc c++ g++ cpp clang ld as make cmake ninja postgres pg_ctl initdb slapd nginx prosody \
         turnserver prometheus alertmanager node npm python3 chromium; do
  p=$(command -v "$b") && echo "binary $b at $p"
  for d in /usr/lib/postgresql /usr/sbin /usr/lib/gcc; do
    [ -d "$d" ] && find "$d" -maxdepth 3 -type f -name "$b" -print | sed "s/^/binary $b at /"
  done
done
dpkg-query -W -f "\${Package}\n" | grep -E "^(gcc|g\+\+|cpp|clang|binutils|make|cmake|ninja-build)(-[0-9]+)?$|-dev$|^postgresql|^slapd$|^nginx|^prosody$|^coturn$|^prometheus|^chromium|^nodejs$|^python3" | sed "s/^/package /"
true') || fail "could not inspect the runtime image"
  [ -z "$found" ] || fail "the runtime image holds what it must not: $found"
}

main() {
  local base t0 t1
  base=$(base_name)
  import_base "$base"
  t0=$(date +%s)
  build_image
  t1=$(date +%s)
  local size
  size=$(bh images --format '{{.Size}}' "$IMAGE")
  log "image $IMAGE built in $((t1 - t0)) s (from $base), size $size"
  # The build log proves the build stage ran the build-dependency script and the release preset.
  grep -q 'install-build-deps.sh: build dependencies present' "$TMP/build-stage.log" "$TMP/build.log" ||
    log "  (build stage cached from an earlier run)"

  [ "$(image_config User)" = '"10001:10001"' ] || fail "image user is $(image_config User), not 10001:10001"
  HEALTH=$(image_config Healthcheck)
  [ "$HEALTH" != null ] || fail "the image has no HEALTHCHECK (built in OCI format?)"
  # Docker's timeout (nanoseconds) bounds each check.
  HEALTH_TIMEOUT=$("$PY" -c 'import json,sys; print(max(1, json.loads(sys.argv[1]).get("Timeout", 30e9) // 10**9))' "$HEALTH")
  local -a entry cmd
  mapfile -t entry < <(image_config Entrypoint | "$PY" -c 'import json,sys; print("\n".join(json.load(sys.stdin) or []))')
  mapfile -t cmd < <(image_config Cmd | "$PY" -c 'import json,sys; print("\n".join(json.load(sys.stdin) or []))')
  [ "${entry[0]}" = /usr/local/bin/pes-agent ] || fail "entrypoint is ${entry[*]}"
  log "entrypoint ${entry[*]}, cmd ${cmd[*]}, healthcheck timeout ${HEALTH_TIMEOUT}s"

  # The network: a namespace of the test's, with loopback only. chroot isolation shares the
  # namespace buildah runs in, so the agent, its target and the checks all meet on 127.0.0.1
  # there, and the image's own port 9469 cannot collide with anything else on the machine.
  ip netns add "$NS"
  in_ns ip link set lo up

  log "HTTP target: python3 -m http.server on 127.0.0.1 in the namespace"
  mkdir -p "$TMP/www" && echo ok >"$TMP/www/ok"
  local port=8080
  in_ns "$PY" -m http.server --bind 127.0.0.1 --directory "$TMP/www" "$port" >"$TMP/http.log" 2>&1 &
  in_ns bash -c "for i in \$(seq 100); do curl -fs -o /dev/null http://127.0.0.1:$port/ok && exit 0; sleep 0.1; done; exit 1" ||
    fail "the test's HTTP server did not start: $(cat "$TMP/http.log")"

  # The configuration goes where compose mounts compose/agent.yml.
  cat >"$TMP/agent.yml" <<EOF
global:
  interval: 1s
  timeout: 1s
  labels: {platform: image-test}
probes:
  - name: web
    service: web
    type: http
    http:
      url: http://127.0.0.1:$port/ok
      expect: {status: [200], body_regex: ["^ok"]}
  - name: closed
    service: closed
    type: tcp
    tcp: {address: "127.0.0.1:9"}
EOF
  chmod 644 "$TMP/agent.yml"
  CTR=$(bh from --pull=never "$IMAGE")

  log "check the runtime contents (no compiler, no -dev package, no test server)"
  check_contents

  log "run the image's entrypoint and cmd as 10001:10001: ${entry[*]} ${cmd[*]}"
  in_image -v "$TMP/agent.yml:/etc/pes-agent/agent.yml:ro" "$CTR" -- "${entry[@]}" "${cmd[@]}" \
    >"$TMP/agent.log" 2>&1 &
  local runner=$! metrics="" i
  for ((i = 0; i < 300; i++)); do
    metrics=$(in_ns curl -fsS --max-time 2 http://127.0.0.1:9469/metrics 2>/dev/null) &&
      grep -q '^probe_success{.*probe="web".*} 1$' <<<"$metrics" &&
      grep -q '^probe_success{.*probe="closed".*} 0$' <<<"$metrics" && break
    sleep 0.1
  done
  grep -q '^probe_success{.*probe="web".*} 1$' <<<"$metrics" ||
    fail "no probe_success{probe=\"web\"} 1 on /metrics: $(grep -E '^probe_success' <<<"$metrics"); agent: $(tail -n 20 "$TMP/agent.log")"
  grep -q '^probe_success{.*probe="closed".*} 0$' <<<"$metrics" ||
    fail "no probe_success{probe=\"closed\"} 0 on /metrics"
  grep -q '^pes_agent_build_info{' <<<"$metrics" || fail "no pes_agent_build_info on /metrics"
  grep -q '"GET /ok HTTP/1.1" 200' "$TMP/http.log" || fail "the HTTP server saw no probe request"
  local pid
  pid=$(agent_pid)
  [ -n "$pid" ] || fail "no pes-agent process in the namespace"
  [ "$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")" = 10001 ] || fail "the agent does not run as uid 10001"
  log "  /metrics from outside the container: web up, closed down; agent PID $pid runs as uid 10001"

  log "the image's HEALTHCHECK while the agent serves"
  healthcheck || fail "HEALTHCHECK failed while the agent serves"
  log "  passes"

  log "stop the agent (SIGTERM to PID $pid); the HEALTHCHECK must fail"
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do
    [ -z "$(agent_pid)" ] && break
    sleep 0.1
  done
  [ -z "$(agent_pid)" ] || fail "the agent did not stop on SIGTERM"
  wait "$runner" || true
  if healthcheck 2>/dev/null; then fail "HEALTHCHECK passed with the agent stopped"; fi
  log "  fails"
  log "PASS (image $size, built in $((t1 - t0)) s)"
}

main
