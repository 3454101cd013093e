# The systemd unit: `systemd-analyze verify` is clean and the offline
# security exposure stays at or under 3.0 (shared/THREATS.md R11).
# The unit is generated from systemd/llamad.service.in as the build does,
# with @bindir@ pointing at the built llamad (verify needs ExecStart's
# binary to exist) and @sysconfdir@ at a temporary directory.
. "$LLAMAD_SRCDIR/tests/e2e/lib.sh"

EXPOSURE_MAX=3.0
in="$LLAMAD_SRCDIR/systemd/llamad.service.in"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    skip "systemd-analyze verify (systemd-analyze is not installed)"
    skip "systemd-analyze security exposure (systemd-analyze is not installed)"
    exit 0
fi
if [ ! -x "$LLAMAD_BIN" ]; then
    fail "systemd-analyze verify" "no llamad at $LLAMAD_BIN"
    exit 1
fi

bindir=$(cd "$(dirname "$LLAMAD_BIN")" && pwd)
unit="$E2E_TMP/llamad.service"
mkdir -p "$E2E_TMP/etc"
sed -e "s|@bindir@|$bindir|g" -e "s|@sysconfdir@|$E2E_TMP/etc|g" "$in" >"$unit"
# the binary's name must be llamad for ExecStart
[ "$(basename "$LLAMAD_BIN")" = llamad ] || {
    cp "$LLAMAD_BIN" "$E2E_TMP/llamad" && sed -i "s|$bindir/llamad|$E2E_TMP/llamad|" "$unit"
}

check "unit has no @placeholders@ left" sh -c "! grep -q '@[a-z]*@' '$unit'"

out=$(systemd-analyze verify "$unit" 2>&1); rc=$?
if [ $rc = 0 ] && [ -z "$out" ]; then
    pass "systemd-analyze verify is clean"
else
    fail "systemd-analyze verify is clean" "rc=$rc: $out"
fi

sec=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1)
score=$(echo "$sec" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' | tail -1)
if [ -z "$score" ]; then
    fail "systemd-analyze security exposure <= $EXPOSURE_MAX" "no score in: $(echo "$sec" | tail -3)"
elif awk -v s="$score" -v m="$EXPOSURE_MAX" 'BEGIN { exit !(s <= m) }'; then
    pass "systemd-analyze security exposure <= $EXPOSURE_MAX (it is $score)"
else
    fail "systemd-analyze security exposure <= $EXPOSURE_MAX (it is $score)" \
        "$(echo "$sec" | grep '✗')"
fi

# What THREATS part (c) requires of the unit, line by line.
for want in "Type=notify" "NotifyAccess=main" "WatchdogSec=" "NoNewPrivileges=yes" \
            "CapabilityBoundingSet=$" "ProtectSystem=strict" "ProtectHome=yes" \
            "PrivateTmp=yes" "PrivateDevices=no" "DevicePolicy=closed" \
            "DeviceAllow=char-nvidiactl rw" "DeviceAllow=char-nvidia-uvm rw" \
            "LoadCredential=apikeys:" "MemoryDenyWriteExecute=yes" \
            "SystemCallArchitectures=native" "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" \
            "UMask=0077" "TimeoutStopSec="; do
    check "unit sets $want" grep -q "^$want" "$unit"
done
if grep -q '^DynamicUser=yes' "$unit" || grep -q '^User=llamad' "$unit"; then
    pass "unit runs as DynamicUser or the llamad user"
else
    fail "unit runs as DynamicUser or the llamad user"
fi
if grep -q '^SystemCallFilter=.*memfd_create' "$unit" || grep -q '^SystemCallFilter=~.*@memfd\|memfd' "$unit"; then
    fail "unit does not deny memfd_create (the CUDA driver needs it)"
else
    pass "unit does not deny memfd_create (the CUDA driver needs it)"
fi

# The template unit llamad@.service, made as the build makes it: instance 1
# takes GPU 1 and its port from llamad-1.env.
tunit="$E2E_TMP/llamad@.service"
sed -f "$LLAMAD_SRCDIR/systemd/llamad-instance.sed" "$in" |
    sed -e "s|@bindir@|$(dirname "$(grep -o '^ExecStart=[^ ]*' "$unit" | cut -d= -f2)")|g" \
        -e "s|@sysconfdir@|$E2E_TMP/etc|g" >"$tunit"
mkdir -p "$E2E_TMP/etc/llamad"
echo "LLAMAD_PORT=8081" >"$E2E_TMP/etc/llamad/llamad-1.env"
cp "$tunit" "$E2E_TMP/llamad@1.service"
out=$(systemd-analyze verify "$E2E_TMP/llamad@1.service" 2>&1); rc=$?
if [ $rc = 0 ] && [ -z "$out" ]; then
    pass "systemd-analyze verify llamad@1.service is clean"
else
    fail "systemd-analyze verify llamad@1.service is clean" "rc=$rc: $out"
fi
check "llamad@.service: the instance is the GPU, the env file gives the port" \
    sh -c "grep -q -- '--gpu-device %i --port \${LLAMAD_PORT}\$' '$tunit' &&
           grep -q '^DeviceAllow=/dev/nvidia%i rw' '$tunit' &&
           grep -q '^EnvironmentFile=$E2E_TMP/etc/llamad/llamad-%i.env' '$tunit' &&
           ! grep -q 'nvidia0' '$tunit'"
