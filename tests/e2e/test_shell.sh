# The daemon's shell: --help, --version, configuration errors, /health, SIGTERM.
. "$LLAMAD_SRCDIR/tests/e2e/lib.sh"

out=$("$LLAMAD_BIN" --help)
ok=1
for key in model host port backend threads log-level log-file chat-template; do
    echo "$out" | grep -q -- "--$key " || { ok=0; echo "  --help lacks --$key"; }
done
echo "$out" | grep -q "default: 8080" || ok=0
[ $ok = 1 ] && pass "help lists every option with its default" || fail "help lists every option with its default"

check "version" sh -c "'$LLAMAD_BIN' --version | grep -q '^llamad [0-9]'"

printf '[server]\nport = 8080\n\n[engine]\nbogus-key = 3\n' > "$E2E_TMP/bad.conf"
msg=$("$LLAMAD_BIN" --config "$E2E_TMP/bad.conf" --check-config 2>&1); rc=$?
if [ $rc = 2 ] && echo "$msg" | grep -q "$E2E_TMP/bad.conf:5" && echo "$msg" | grep -q bogus-key; then
    pass "broken config names file, line and key"
else
    fail "broken config names file, line and key" "rc=$rc msg=$msg"
fi

printf '[server]\nport = 99999\n' > "$E2E_TMP/bad2.conf"
msg=$("$LLAMAD_BIN" --config "$E2E_TMP/bad2.conf" 2>&1); rc=$?
if [ $rc = 2 ] && echo "$msg" | grep -q "bad2.conf:2" && echo "$msg" | grep -q port; then
    pass "bad value names file, line and key"
else
    fail "bad value names file, line and key" "rc=$rc msg=$msg"
fi

msg=$("$LLAMAD_BIN" --config "$LLAMAD_SRCDIR/conf/llamad.conf" --port 9123 --check-config 2>/dev/null)
check "flags win over the file" sh -c "echo '$msg' | grep -q '^port = 9123$'"

msg=$("$LLAMAD_BIN" --no-such-flag 1 2>&1); rc=$?
check "unknown flag is an error" sh -c "[ $rc = 2 ] && echo '$msg' | grep -q no-such-flag"

if ! have_model; then
    skip "daemon starts (the default model is not fetched)"
elif start_llamad --config "$LLAMAD_SRCDIR/conf/llamad.conf"; then
    pass "daemon starts"
    code=$(curl -s -o "$E2E_TMP/h" -w '%{http_code}' "http://127.0.0.1:$PORT/health")
    check "GET /health answers" sh -c "[ '$code' = 200 ] || [ '$code' = 503 ]"
    code=$(curl -s -o "$E2E_TMP/nf" -w '%{http_code}' "http://127.0.0.1:$PORT/no/such/route")
    check "unknown route is a JSON 404" sh -c "[ '$code' = 404 ] && grep -q '\"error\"' '$E2E_TMP/nf'"
    stop_llamad
    check "SIGTERM exits 0" [ $? = 0 ]
else
    fail "daemon starts"
fi
