#!/usr/bin/env bash
# The .deb end to end, as an admin meets it (run as root on Debian 12; CI calls it from .ci/run):
#
#  1. build the package (scripts/build-deb.sh: clean copy of the tree, lintian without errors),
#     unless DEB=path/to/pullprint_*.deb is given;
#  2. a fresh Debian 12 root (debootstrap bookworm --variant=minbase, cached under $CACHE and
#     copied for each run), the package installed there with apt: dependencies downloaded first
#     (cached under $CACHE/archives), then the install itself runs without network (unshare -n);
#  3. checks on the installed files: modes and owners, user pullprint in lpadmin, generated
#     tokens, the backend's discovery line, the filter run as lp, `pullprint --help` (and every
#     subcommand's), `pullprint doctor` once it exists (run when cupsd, server and node are up);
#  4. cupsd started by hand in the root (no systemd there) on a free loopback port; the postinst's
#     queue step: skipped in a chroot, done with PULLPRINT_QUEUE_IN_CHROOT=1, idempotent;
#  5. the cycle (CYCLE=0 skips it): an ippeveprinter on the host's loopback, `pullprint server`
#     and `pullprint node` started in the root exactly as the systemd units say (ExecStart, User,
#     SupplementaryGroups) with the conffile edited for loopback ports; lp -> held in CUPS ->
#     pullprint release -> printed, CUPS job completed;
#  6. apt remove keeps the configuration, spool and data; apt purge removes them, the queue and
#     every file of the package.
#
# Ends with "DEB TEST OK ..." on success. Environment: CACHE (default /var/cache/pullprint-test),
# WORK (default build/deb-test), DEB, CYCLE (default 1), KEEP=1 keeps the root afterwards,
# PRINTER_PEER=cli starts ippeveprinter directly even when pullprint.peers.ippeve is there.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
CACHE=${CACHE:-/var/cache/pullprint-test}
WORK=${WORK:-$REPO/build/deb-test}
CYCLE=${CYCLE:-1}
ROOT=$WORK/root
BASE=$CACHE/bookworm-minbase
T0=$(date +%s)

log() { echo "deb-test [$(($(date +%s) - T0))s]: $*" >&2; }
fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }
in_root() { chroot "$ROOT" "$@"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (debootstrap, chroot, mounts)"

# -- host tools --------------------------------------------------------------------------------
host_pkgs=(debootstrap util-linux cups-ipp-utils avahi-daemon dbus qpdf curl)
missing=()
for pkg in "${host_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing on the host: ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- 1. the package ----------------------------------------------------------------------------
if [ -z "${DEB:-}" ]; then
  log "building the package"
  DEB=$(bash scripts/build-deb.sh | tail -n1)
fi
[ -f "$DEB" ] || fail "no package at $DEB"
log "package: $DEB"

# -- 2. a fresh Debian 12 root -----------------------------------------------------------------
mkdir -p "$CACHE/archives/partial" "$WORK"
if [ ! -f "$BASE/.pullprint-base-ok" ]; then
  mirror=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '/^deb / && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$mirror" ] || fail "no Debian mirror in this host's apt sources"
  log "debootstrap bookworm (minbase) into $BASE (once; cached)"
  rm -rf "$BASE.tmp"
  debootstrap --variant=minbase --cache-dir="$CACHE/archives" bookworm "$BASE.tmp" "$mirror" \
    > "$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; fail "debootstrap"; }
  rm -rf "$BASE" && mv "$BASE.tmp" "$BASE" && touch "$BASE/.pullprint-base-ok"
fi

PIDS=()
MOUNTS=()
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null; done
  if [ "${KEEP:-0}" != 1 ] && [ -d "$ROOT" ]; then
    # never delete through a mount that is still there
    if ! grep -q " $ROOT/" /proc/mounts; then rm -rf "$ROOT"; fi
  fi
}
trap cleanup EXIT

# In case an earlier run was killed: nothing may still be mounted under the old root.
grep " $ROOT/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l || true
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"
rm -f "$ROOT/.pullprint-base-ok"
mount_in() { mkdir -p "$ROOT$2"; mount "${@:3}" "$1" "$ROOT$2"; MOUNTS+=("$ROOT$2"); }
mount_in proc /proc -t proc
mount_in sysfs /sys -t sysfs
mount_in /dev /dev --bind
mount_in devpts /dev/pts -t devpts -o newinstance,ptmxmode=0666
mount_in tmpfs /run -t tmpfs -o mode=0755   # its own /run: never the host's cupsd socket
mount_in "$CACHE/archives" /var/cache/apt/archives --bind
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# The host's Debian sources (with its updates and security suites), else debootstrap's.
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  cp /etc/apt/sources.list.d/debian.sources "$ROOT/etc/apt/sources.list.d/"
  rm -f "$ROOT/etc/apt/sources.list"
elif [ -s /etc/apt/sources.list ]; then
  grep -v '^#' /etc/apt/sources.list > "$ROOT/etc/apt/sources.list"
fi
# No daemon may start during the install (cups-daemon's postinst would start cupsd on the host's
# network); the test starts cupsd itself.
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
cp "$DEB" "$ROOT/tmp/"
debname=/tmp/$(basename "$DEB")

log "apt: downloading what the package needs"
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends --download-only "$debname" >/dev/null
# (apt 2.6 cannot combine --no-download with a .deb file: "Pathname to install is not
# absolute"; in a network namespace of its own any download would fail just the same.)
log "apt: installing without network"
unshare -n chroot "$ROOT" apt-get install -y --no-install-recommends "$debname" \
  > "$WORK/install.log" 2>&1 || { tail -30 "$WORK/install.log" >&2; fail "apt install"; }
grep -iE "^(E|W): |error" "$WORK/install.log" >&2 || true
log "installed: $(in_root dpkg-query -W -f='${Package} ${Version} ${Status}' pullprint)"

# -- 3. the installed files --------------------------------------------------------------------
check_stat() { # path expected-"mode owner:group"
  local got; got=$(in_root stat -c '%a %U:%G' "$1") || fail "$1 missing"
  [ "$got" = "$2" ] || fail "$1 is $got, expected $2"
  echo "  ok $1 $got"
}
check_stat /usr/lib/cups/backend/pullprint "700 root:root"
check_stat /usr/lib/cups/filter/pullprint-finish "755 root:root"
check_stat /usr/lib/pullprint/bin/backend "700 root:root"
check_stat /usr/lib/pullprint/bin/filter "755 root:root"
for f in /usr/lib/cups/backend/pullprint /usr/lib/cups/filter/pullprint-finish; do
  [ "$(head -c 4 "$ROOT$f" | od -An -c | tr -d ' ')" = '177ELF' ] || fail "$f is not the compiled hand-off"
done
echo "  ok backend and filter are the compiled hand-off (handoff.c) over /usr/lib/pullprint/bin/"
check_stat /usr/bin/pullprint "755 root:root"
check_stat /usr/share/ppd/pullprint/pullprint.ppd "644 root:root"
check_stat /etc/pullprint/pullprint.toml "640 root:pullprint"
check_stat /var/spool/pullprint "700 pullprint:pullprint"
check_stat /var/lib/pullprint "750 pullprint:pullprint"
check_stat /lib/systemd/system/pullprint-node.service "644 root:root"
check_stat /lib/systemd/system/pullprint-server.service "644 root:root"
check_stat /lib/systemd/system/pullprint-submitd.service "644 root:root"
in_root id -nG pullprint | tr ' ' '\n' | grep -qx lpadmin || fail "pullprint is not in lpadmin"
echo "  ok user pullprint: $(in_root id pullprint)"
in_root dpkg-query -W -f='${Conffiles}\n' pullprint | grep -q /etc/pullprint/pullprint.toml \
  || fail "pullprint.toml is not a conffile"
echo "  ok conffile /etc/pullprint/pullprint.toml"
grep -q '^admin_token = "[0-9a-f]\{64\}"' "$ROOT/etc/pullprint/pullprint.toml" || fail "admin_token not generated"
node_token=$(sed -n 's/^token = "\([^"]*\)".*/\1/p' "$ROOT/etc/pullprint/pullprint.toml")
[ ${#node_token} -eq 64 ] && grep -q "node1 = \"$node_token\"" "$ROOT/etc/pullprint/pullprint.toml" \
  || fail "node token not generated or not equal to cloud.node_tokens.node1"
echo "  ok tokens generated (admin, node1 = node.token)"
in_root man -w pullprint >/dev/null 2>&1 || [ -f "$ROOT/usr/share/man/man1/pullprint.1.gz" ] || fail "no man page"
echo "  ok man page pullprint(1)"
n_pyc=$(find "$ROOT/usr/lib/pullprint/venv" -name '*.pyc' | wc -l)
echo "  ok byte code compiled by the postinst: $n_pyc files"

discovery=$(in_root /usr/lib/cups/backend/pullprint)
echo "  backend discovery: $discovery"
case "$discovery" in 'network pullprint:/ '*) ;; *) fail "backend discovery line: $discovery" ;; esac

in_root setpriv --reuid=lp --regid=lp --init-groups /usr/lib/pullprint/venv/bin/python3 -c \
  'from pullprint.peers.documents import make_pdf; from pathlib import Path; make_pdf(Path("/tmp/doc.pdf"), 3)' \
  || fail "user lp cannot run the private environment's python"
chmod 0644 "$ROOT/tmp/doc.pdf"
in_root setpriv --reuid=lp --regid=lp --init-groups env TMPDIR=/tmp \
  /usr/lib/cups/filter/pullprint-finish 1 alice doc 1 "" /tmp/doc.pdf > "$WORK/filtered.pdf" \
  2> "$WORK/filter.err" || { cat "$WORK/filter.err" >&2; fail "the filter failed as user lp"; }
head -c 5 "$WORK/filtered.pdf" | grep -q '%PDF-' || fail "the filter wrote no PDF"
echo "  ok filter as lp: $(wc -c < "$WORK/filtered.pdf") bytes of PDF; $(grep -E '^(PAGE|ATTR|INFO)' "$WORK/filter.err" | tr '\n' ' ')"

in_root pullprint --help > "$WORK/help.txt" 2> "$WORK/help.err" || fail "pullprint --help"
# Nothing on stderr: no warning from a mismatched library (e.g. requests with a foreign urllib3).
[ ! -s "$WORK/help.err" ] || { cat "$WORK/help.err" >&2; fail "pullprint --help wrote to stderr"; }
for sub in jobs show release cancel printers server node admin; do
  in_root pullprint "$sub" --help >/dev/null || fail "pullprint $sub --help"
done
echo "  ok pullprint --help and every subcommand's --help: $(head -n1 "$WORK/help.txt" | cut -c1-90)"
HAVE_DOCTOR=0
in_root pullprint doctor --help >/dev/null 2>&1 && HAVE_DOCTOR=1
run_doctor() { # fatal(1|0): pullprint doctor, once the installed system should be healthy
  if [ "$HAVE_DOCTOR" != 1 ]; then
    echo "  pullprint doctor does not exist yet (pullprint --help checked above)"
    return 0
  fi
  log "pullprint doctor"
  if in_root pullprint doctor > "$WORK/doctor.txt" 2>&1; then
    sed 's/^/  /' "$WORK/doctor.txt"
  elif [ "$1" = 1 ]; then
    cat "$WORK/doctor.txt" >&2; fail "pullprint doctor"
  else
    sed 's/^/  (not fatal without the daemons) /' "$WORK/doctor.txt"
  fi
}

# -- 4. cupsd and the queue --------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port seconds
  local end=$(($(date +%s) + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ "$(date +%s)" -lt "$end" ] || return 1; sleep 0.2
  done
}
CUPS_PORT=$(free_port)
sed -i -e "s/^Listen localhost:631/Listen 127.0.0.1:$CUPS_PORT/" -e 's/^Browsing .*/Browsing Off/' \
  "$ROOT/etc/cups/cupsd.conf"
mkdir -p "$ROOT/run/cups"
start_cupsd() {
  chroot "$ROOT" /usr/sbin/cupsd -f > "$WORK/cupsd.out" 2>&1 &
  CUPSD=$!
  PIDS+=("$CUPSD")
  wait_port "$CUPS_PORT" 15 || fail "cupsd did not start (see $ROOT/var/log/cups/error_log)"
  for _ in $(seq 50); do [ -S "$ROOT/run/cups/cups.sock" ] && break; sleep 0.1; done
}
start_cupsd
log "cupsd runs in the root (127.0.0.1:$CUPS_PORT and /run/cups/cups.sock)"

in_root dpkg-reconfigure -fnoninteractive pullprint
if in_root lpstat -p PullPrint >/dev/null 2>&1; then fail "the postinst made the queue in a chroot"; fi
echo "  ok postinst leaves the queue alone in a chroot"
in_root env PULLPRINT_QUEUE_IN_CHROOT=1 dpkg-reconfigure -fnoninteractive pullprint
in_root lpstat -v PullPrint | grep -q 'pullprint:/' || fail "the postinst did not make the queue"
in_root env PULLPRINT_QUEUE_IN_CHROOT=1 dpkg-reconfigure -fnoninteractive pullprint \
  || fail "a second configure failed"
echo "  ok queue: $(in_root lpstat -v PullPrint); again: still one, configure exit 0"
in_root python3 -c 'import cups; a = cups.Connection().getPrinterAttributes("PullPrint")
print("  queue attributes:", {k: a[k] for k in ("device-uri", "printer-error-policy", "printer-is-accepting-jobs", "printer-state")})
assert a["printer-error-policy"] == "abort-job" and a["printer-is-accepting-jobs"], a' || fail "queue attributes"

tokens_before=$(grep -E '^(admin_token|node_tokens|token) = ' "$ROOT/etc/pullprint/pullprint.toml")
unshare -n chroot "$ROOT" apt-get install -y -qq --reinstall "$debname" > "$WORK/reinstall.log" 2>&1 \
  || { tail -20 "$WORK/reinstall.log" >&2; fail "apt install --reinstall"; }
[ "$tokens_before" = "$(grep -E '^(admin_token|node_tokens|token) = ' "$ROOT/etc/pullprint/pullprint.toml")" ] \
  || fail "a reinstall changed the tokens"
check_stat /etc/pullprint/pullprint.toml "640 root:pullprint"
[ "$(in_root lpstat -v | grep -c 'pullprint:/')" -eq 1 ] || fail "not exactly one pullprint queue after a reinstall"
echo "  ok reinstall: tokens kept, conffile mode kept, one queue"

# -- 5. print -> hold -> release -> printed ----------------------------------------------------
cycle_result="skipped (CYCLE=0)"
[ "$CYCLE" = 1 ] || run_doctor 0
if [ "$CYCLE" = 1 ]; then
  log "cycle: ippeveprinter on the host's loopback"
  PRN=$WORK/printer
  rm -rf "$PRN"; mkdir -p "$PRN/spool" "$PRN/keys"
  PRN_PORT=$(free_port)
  if [ "${PRINTER_PEER:-auto}" != cli ] && [ -x "$REPO/.venv/bin/python" ] \
    && "$REPO/.venv/bin/python" -c 'import pullprint.peers.ippeve' 2>/dev/null; then
    "$REPO/.venv/bin/python" - "$PRN" "$PRN/uri" > "$WORK/ippeve.log" 2>&1 <<'PY' &
import signal, sys, time
from pathlib import Path
from pullprint.peers.ippeve import IppEvePrinter
printer = IppEvePrinter(Path(sys.argv[1]), name="printer1")
printer.start()
Path(sys.argv[2]).write_text(printer.uri)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
try:
    while True:
        time.sleep(1)
finally:
    printer.stop()
PY
    PIDS+=("$!")
    for _ in $(seq 150); do [ -s "$PRN/uri" ] && break; sleep 0.1; done
    [ -s "$PRN/uri" ] || { cat "$WORK/ippeve.log" >&2; fail "IppEvePrinter did not start"; }
    PRN_URI=$(cat "$PRN/uri")
  else
    if ! avahi-daemon --check 2>/dev/null; then
      mkdir -p /run/dbus
      [ -S /run/dbus/system_bus_socket ] || dbus-daemon --system --fork --print-pid >/dev/null
      avahi-daemon --no-drop-root --no-rlimits -D
    fi
    cat > "$PRN/report" <<'SH'
#!/bin/sh
# ippeveprinter -c: report real impressions for the printed file
n=$(qpdf --show-npages "$1" 2>/dev/null || echo 1)
echo "ATTR: job-impressions-completed=$n job-media-sheets-completed=$n" >&2
SH
    chmod 0755 "$PRN/report"
    ippeveprinter -p "$PRN_PORT" -n localhost -f application/pdf,image/pwg-raster -k -d "$PRN/spool" \
      -K "$PRN/keys" -c "$PRN/report" -2 "pullprint-deb-test" > "$WORK/ippeve.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$PRN_PORT" 15 || { cat "$WORK/ippeve.log" >&2; fail "ippeveprinter did not start"; }
    PRN_URI="ipp://127.0.0.1:$PRN_PORT/ipp/print"
  fi
  log "printer: $PRN_URI"

  CLOUD_PORT=$(free_port)
  conf=$ROOT/etc/pullprint/pullprint.toml
  sed -i -e "s/^listen_port = .*/listen_port = $CLOUD_PORT/" \
    -e "s|^cloud_url = .*|cloud_url = \"http://127.0.0.1:$CLOUD_PORT\"|" \
    -e 's/^# poll_timeout = .*/poll_timeout = 5.0/' \
    -e 's/^# outbox_retry_seconds = .*/outbox_retry_seconds = 0.5/' "$conf"

  run_unit() { # unit log: run ExecStart as the unit's User, Group and SupplementaryGroups
    local unit=$ROOT/lib/systemd/system/$1 exec user group groups
    exec=$(sed -n 's/^ExecStart=//p' "$unit")
    user=$(sed -n 's/^User=//p' "$unit")
    group=$(sed -n 's/^Group=//p' "$unit")
    groups=$(sed -n 's/^SupplementaryGroups=//p' "$unit" | tr ' ' ',')
    # shellcheck disable=SC2086
    chroot "$ROOT" setpriv --reuid="$user" --regid="$group" \
      --groups="$(in_root id -G "$user" | tr ' ' ',')${groups:+,$(for g in ${groups//,/ }; do in_root getent group "$g" | cut -d: -f3; done | paste -sd,)}" \
      sh -c "umask $(sed -n 's/^UMask=//p' "$unit"); exec $exec" > "$2" 2>&1 &
    PIDS+=("$!")
  }
  run_unit pullprint-server.service "$WORK/server.log"
  SERVER_PID=${PIDS[-1]}
  wait_port "$CLOUD_PORT" 30 || { tail -30 "$WORK/server.log" >&2; fail "pullprint server did not listen"; }
  log "pullprint server (as pullprint) on 127.0.0.1:$CLOUD_PORT"
  in_root pullprint admin user-add alice --pin 1234
  in_root pullprint admin printer-add printer1 --uri "$PRN_URI" --node node1 --price 0.05
  run_unit pullprint-node.service "$WORK/node.log"
  NODE_PID=${PIDS[-1]}
  log "pullprint node (as pullprint, groups lpadmin)"
  # submitd as its unit says; /run/pullprint is its RuntimeDirectory (0755, its user's).
  install -d -m 0755 -o "$(in_root id -u pullprint)" -g "$(in_root id -g pullprint)" "$ROOT/run/pullprint"
  run_unit pullprint-submitd.service "$WORK/submitd.log"
  SUBMITD_PID=${PIDS[-1]}
  for _ in $(seq 100); do [ -S "$ROOT/run/pullprint/submit.sock" ] && break; sleep 0.1; done
  [ -S "$ROOT/run/pullprint/submit.sock" ] || { cat "$WORK/submitd.log" >&2; fail "pullprint submitd made no socket"; }
  log "pullprint submitd (as pullprint): $(in_root stat -c '%a %U' /run/pullprint/submit.sock) /run/pullprint/submit.sock"
  in_root setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/lib/pullprint/venv/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect("/run/pullprint/submit.sock"); s.settimeout(10)
print(s.recv(200).decode(errors="replace").strip())' > "$WORK/nobody.txt" 2>&1 || true
  grep -q REFUSED "$WORK/nobody.txt" || { cat "$WORK/nobody.txt" >&2; fail "submitd did not refuse user nobody"; }
  echo "  ok submitd refuses user nobody: $(head -c 120 "$WORK/nobody.txt")"
  run_doctor 1
  grep -q "cupsd version: $(in_root dpkg-query -W -f='${Version}' cups-daemon)" "$WORK/doctor.txt" \
    || fail "pullprint doctor does not name cupsd's version"
  # alice prints as herself, with an account on the print server, as people do: Debian 12's cupsd
  # 2.4.2-3+deb12u10 crashes on a job whose requesting user has no local account (root's
  # `lp -U alice` for an unknown alice; OpenPrinting/cups#1555, doctor warns about it).
  in_root useradd --create-home --shell /bin/sh alice

  cat > "$ROOT/tmp/cycle.py" <<'PY'
"""print -> hold -> release -> printed, with the installed command line and Debian's pycups."""
import json, os, re, subprocess, sys, time

import cups

DAEMONS = {"pullprint server": int(sys.argv[1]), "pullprint node": int(sys.argv[2])}


def sh(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def wait(what, probe, timeout):
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        for name, pid in DAEMONS.items():
            if not os.path.exists(f"/proc/{pid}"):
                sys.exit(f"cycle: {name} (pid {pid}) died while waiting for {what}")
        if time.monotonic() > end:
            sys.exit(f"cycle: timed out waiting for {what}")
        time.sleep(0.2)


conn = cups.Connection()
out = sh("setpriv", "--reuid=alice", "--regid=alice", "--init-groups",
         "lp", "-d", "PullPrint", "-t", "deb-test", "/tmp/doc.pdf")
cups_id = int(re.search(r"request id is \S+-(\d+)", out).group(1))
print(f"cycle: lp -> CUPS job {cups_id}", flush=True)
state = lambda: conn.getJobAttributes(cups_id)["job-state"]
wait("the CUPS job to be held", lambda: state() == cups.IPP_JOB_HELD, 60)
attrs = conn.getJobAttributes(cups_id)
print(f"cycle: CUPS job {cups_id} held: {attrs.get('job-printer-state-message', '')!r}", flush=True)


def cloud_job():
    jobs = json.loads(sh("pullprint", "jobs", "--user", "alice", "--json"))
    return next((j for j in jobs if j.get("cups_job_id") == cups_id), None)


job = wait("the job in the release service", cloud_job, 60)
print(f"cycle: release service: {job['uuid']} {job['state']} pages={job.get('pages')}", flush=True)
assert job["state"] == "held", job
print("cycle: " + sh("pullprint", "release", job["uuid"], "--printer", "printer1", "--user",
                     "alice", "--pin", "1234").strip(), flush=True)


def final():
    j = json.loads(sh("pullprint", "show", job["uuid"], "--json"))
    return j if j["state"] in ("completed", "canceled", "failed", "expired") else None


done = wait("the job to be printed", final, 120)
print(f"cycle: release service: {done['state']} pages={done.get('pages')} "
      f"transaction={json.dumps(done.get('transaction'))}", flush=True)
assert done["state"] == "completed", done
wait("the CUPS job to complete", lambda: state() == cups.IPP_JOB_COMPLETED, 60)
print(f"CYCLE OK job={job['uuid']} cups_job={cups_id} cups=completed", flush=True)
PY
  log "cycle: lp -> held -> release -> printed"
  if in_root python3 /tmp/cycle.py "$SERVER_PID" "$NODE_PID" 2>&1 | tee "$WORK/cycle.log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    cycle_result=$(grep '^CYCLE OK' "$WORK/cycle.log")
    # ippeveprinter keeps what it printed (-k) in its spool: the document, whole.
    uuid=$(sed -n 's/^CYCLE OK job=\([^ ]*\).*/\1/p' "$WORK/cycle.log")
    printed=$(find "$PRN/spool" -name "*$uuid*.pdf" | head -n1)
    [ -n "$printed" ] || fail "the printer's spool holds no document of job $uuid"
    pages=$(qpdf --show-npages "$printed")
    [ "$pages" -eq 3 ] || fail "the printer received $pages pages, expected 3"
    cycle_result="$cycle_result printer_pages=$pages"
    # The job went through submitd: the filter's and the backend's first run, handed off.
    grep -qE "filter job [0-9]+ of pid [0-9]+: exit 0" "$WORK/submitd.log" \
      && grep -qE "backend job [0-9]+ of pid [0-9]+( on [^:]+)?: exit 3" "$WORK/submitd.log" \
      || { cat "$WORK/submitd.log" >&2; fail "the job did not go through pullprint submitd"; }
    cycle_result="$cycle_result submitd=yes"
  else
    echo "--- server.log" >&2; tail -20 "$WORK/server.log" >&2
    echo "--- node.log" >&2; tail -20 "$WORK/node.log" >&2
    echo "--- cups error_log" >&2; tail -20 "$ROOT/var/log/cups/error_log" >&2
    fail "the print -> hold -> release -> printed cycle (logs in $WORK)"
  fi
  # Stop the node and the server as systemd would (SIGTERM) before the package goes.
  for pid in "${PIDS[@]}"; do [ "$pid" = "$CUPSD" ] || kill "$pid" 2>/dev/null || true; done
  sleep 1
fi

# -- 6. remove keeps data, purge removes everything --------------------------------------------
log "apt remove"
in_root apt-get remove -y -qq pullprint > "$WORK/remove.log" 2>&1 || { cat "$WORK/remove.log" >&2; fail "apt remove"; }
for f in /etc/pullprint/pullprint.toml /var/spool/pullprint /var/lib/pullprint; do
  [ -e "$ROOT$f" ] || fail "apt remove deleted $f"
done
for f in /usr/lib/cups/backend/pullprint /usr/bin/pullprint /usr/lib/pullprint; do
  [ ! -e "$ROOT$f" ] || fail "apt remove left $f"
done
echo "  ok remove: configuration, spool and data kept; program files gone"
log "apt purge"
in_root apt-get purge -y -qq pullprint > "$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log" >&2; fail "apt purge"; }
left=()
for f in /usr/lib/cups/backend/pullprint /usr/lib/cups/filter/pullprint-finish /usr/bin/pullprint \
  /usr/lib/pullprint /usr/share/ppd/pullprint /etc/pullprint /var/spool/pullprint /var/lib/pullprint \
  /lib/systemd/system/pullprint-node.service /lib/systemd/system/pullprint-server.service \
  /lib/systemd/system/pullprint-submitd.service \
  /usr/lib/sysusers.d/pullprint.conf /usr/lib/tmpfiles.d/pullprint.conf /etc/cups/ppd/PullPrint.ppd \
  /usr/share/man/man1/pullprint.1.gz /usr/share/doc/pullprint; do
  [ ! -e "$ROOT$f" ] || left+=("$f")
done
if in_root lpstat -p PullPrint >/dev/null 2>&1; then left+=("queue PullPrint"); fi
# cupsd rewrites printers.conf lazily (up to DirtyCleanInterval later); stopping it writes it now.
kill "$CUPSD" 2>/dev/null || true
for _ in $(seq 100); do kill -0 "$CUPSD" 2>/dev/null || break; sleep 0.1; done
grep -q PullPrint "$ROOT/etc/cups/printers.conf" 2>/dev/null && left+=("PullPrint in printers.conf")
stray=$(find "$ROOT/etc" "$ROOT/usr" "$ROOT/var" "$ROOT/lib" -name '*pullprint*' \
  -not -path '*/var/cache/apt/*' -not -path '*/var/lib/dpkg/*' -not -path '*/var/log/*' 2>/dev/null || true)
[ -z "$stray" ] || mapfile -t -O "${#left[@]}" left <<< "$stray"
st=$(in_root dpkg-query -W -f='${db:Status-Status}' pullprint 2>/dev/null || echo not-installed)
[ "$st" = not-installed ] || left+=("dpkg status: $st")
[ ${#left[@]} -eq 0 ] || fail "after purge: ${left[*]}"
echo "  ok purge: no file, folder or queue of pullprint left (the system user pullprint stays, as Debian does)"

log "done"
echo "DEB TEST OK deb=$(basename "$DEB") install=ok discovery=ok queue=ok cycle=[$cycle_result] purge=clean time=$(($(date +%s) - T0))s"
