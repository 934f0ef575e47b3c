# Helpers for guest scripts (sourced as /guest/lib.sh). Each check prints one
# line "RESULT ok NAME" or "RESULT fail NAME", then the command's output
# indented; `summary` ends the script and fails if any check failed.

passed=0
failed=0

# busybox sh runs its own `ip` applet (no netns, no veth) before PATH.
ip() { /usr/sbin/ip "$@"; }

# _report NAME OK DETAIL OUTPUT: prints the RESULT line and the indented text.
_report() {
    if [ "$2" = 1 ]; then
        passed=$((passed + 1))
        echo "RESULT ok $1"
    else
        failed=$((failed + 1))
        echo "RESULT fail $1"
        [ -z "$3" ] || echo "    ($3)"
    fi
    [ -z "$4" ] || printf '%s\n' "$4" | sed 's/^/    /'
}

# check NAME CMD...: passes if CMD exits 0.
check() {
    _n=$1
    shift
    if _out=$("$@" 2>&1); then _rc=0; else _rc=$?; fi
    _ok=0
    [ "$_rc" != 0 ] || _ok=1
    _report "$_n" "$_ok" "exit status $_rc: $*" "$_out"
}

# expect_contains NAME TEXT CMD...: passes if CMD's output (stdout and
# stderr) contains TEXT, a plain string; the exit status is not looked at.
expect_contains() {
    _n=$1 _want=$2
    shift 2
    if _out=$("$@" 2>&1); then _rc=0; else _rc=$?; fi
    _ok=0
    case $_out in *"$_want"*) _ok=1 ;; esac
    _report "$_n" "$_ok" "output lacks '$_want' (exit status $_rc): $*" "$_out"
}

# expect_status NAME CODE CMD...: passes if CMD exits with status CODE.
expect_status() {
    _n=$1 _want=$2
    shift 2
    if _out=$("$@" 2>&1); then _rc=0; else _rc=$?; fi
    _ok=0
    [ "$_rc" != "$_want" ] || _ok=1
    _report "$_n" "$_ok" "exit status $_rc, expected $_want: $*" "$_out"
}

# step CMD...: a setup command; silent when it works, a failed check when not.
step() {
    if _out=$("$@" 2>&1); then return 0; else _rc=$?; fi
    _report "step: $*" 0 "exit status $_rc" "$_out"
    return 1
}

# summary: prints "N passed, M failed"; fails if a check failed or none ran.
summary() {
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ] && [ "$passed" -gt 0 ]
}
