# Sourced by every part of scripts/test-platforms (from the repository root).

# check NAME COMMAND...: one named check outside cargo: `check: ok NAME` or `check: FAILED NAME`.
check() {
    local name=$1
    shift
    if "$@"; then
        echo "check: ok $name"
    else
        echo "check: FAILED $name"
    fi
}

. scripts/platforms/cross-env
