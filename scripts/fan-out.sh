#!/usr/bin/env bash
# Runs one matrix over several hosts at once: host i of N runs shard i/N over plain ssh, and
# the shards' results are merged into results/<matrix>/ here (README "Many hosts").
#
#   scripts/fan-out.sh [--results DIR] [--remote-dir DIR] HOST... -- MATRIX
#
# For each host it
#   1. copies this checkout's HEAD (git archive) and the matrix file as it is here (it may be
#      untracked or edited) to ~/nicstorm-fanout/<rev>/ on the host;
#   2. runs `make matrix MATRIX=... NICSTORM_RUN_ARGS="--shard i/N --results ..."` there,
#      streaming its output prefixed with "[host i/N]";
#   3. copies the shard's results/<matrix>/ back into
#      <results>/.fanout/<matrix>/<rev>/<host>-shard-i-of-N/<matrix>/.
# Then `nicstorm merge <results>/<matrix> <each shard's dir>`.
#
# A host listed twice runs its shards one after the other (nicstorm's run lock allows one run
# per machine); different hosts run in parallel. The hosts need nothing but ssh, tar, setsid
# and what `make matrix` installs itself. Uncommitted changes other than the matrix are not
# shipped (a warning says so), so every host runs the same commit.
#
# Ctrl-C (or losing the connection) interrupts the remote runs, which tear down as usual; a
# later fan-out of the same commit resumes them, as a rerun of `make matrix` does.
#
# Exit status: 0 every shard ran; 3 some shard had cells that ended in `error` (and nothing
# worse); 1 a shard failed, a copy failed or the merge failed (each is named); 2 usage.
#
# Environment:
#   FANOUT_SSH  the ssh command, split on spaces (default: ssh -o BatchMode=yes)
#   NICSTORM    the local nicstorm binary for plan and merge (default: built by `make build`)
set -euo pipefail

usage="usage: scripts/fan-out.sh [--results DIR] [--remote-dir DIR] HOST... -- MATRIX"
die() {
    echo "fan-out: $*" >&2
    echo "$usage" >&2
    exit 2
}

results=results
remote_base=nicstorm-fanout
hosts=()
separated=false
while [ $# -gt 0 ]; do
    case "$1" in
    --results)
        [ $# -ge 2 ] || die "--results needs a directory"
        results=$2
        shift 2
        ;;
    --remote-dir)
        [ $# -ge 2 ] || die "--remote-dir needs a directory (relative to the remote home)"
        remote_base=$2
        shift 2
        ;;
    -h | --help)
        echo "$usage"
        exit 0
        ;;
    --)
        separated=true
        shift
        break
        ;;
    -*) die "unknown option $1 (hosts cannot start with '-')" ;;
    *)
        hosts+=("$1")
        shift
        ;;
    esac
done
$separated || die "no '--' before the matrix"
[ ${#hosts[@]} -ge 1 ] || die "no hosts before '--'"
[ $# -eq 1 ] || die "expected one matrix file after '--', got $#"
matrix=$1
[ -f "$matrix" ] || die "$matrix: no such matrix file"

repo=$(cd "$(dirname "$0")/.." && pwd)
matrix_abs=$(cd "$(dirname "$matrix")" && pwd)/$(basename "$matrix")
case $results in /*) ;; *) results=$PWD/$results ;; esac
cd "$repo"

# Where the matrix goes in the remote checkout: the same place if it is inside this one.
case $matrix_abs in
"$repo"/*) matrix_rel=${matrix_abs#"$repo"/} ;;
*) matrix_rel=fanout-matrix/$(basename "$matrix_abs") ;;
esac
# results/<name>/ is named for the file stem, as nicstorm names it.
base=$(basename "$matrix_abs")
name=${base%.*}
[ -n "$name" ] || name=$base

rev=$(git rev-parse --short=12 HEAD) || die "$repo: not a git checkout with a commit"
if [ -n "$(git status --porcelain --untracked-files=no -- . ":(exclude)$matrix_rel")" ]; then
    echo "fan-out: warning: uncommitted changes are not shipped; the hosts run commit $rev" >&2
fi

if [ -z "${NICSTORM:-}" ]; then
    make build >&2
    NICSTORM=$repo/target/release/nicstorm
fi
# The matrix must load here before anything is copied anywhere.
"$NICSTORM" plan "$matrix_abs" >/dev/null

read -r -a ssh_cmd <<<"${FANOUT_SSH:-ssh -o BatchMode=yes}"
n=${#hosts[@]}
remote_dir=$remote_base/$rev
work=$results/.fanout/$name/$rev
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
trap 'echo "fan-out: interrupted; the remote runs are interrupted too" >&2; exit 130' INT TERM

# Each host's shards, in the order the hosts were given.
declare -A shards_of=()
order=()
for i in $(seq 1 "$n"); do
    h=${hosts[i - 1]}
    [ -n "${shards_of[$h]+set}" ] || order+=("$h")
    shards_of[$h]="${shards_of[$h]:-} $i"
done

q() { printf '%q' "$1"; }

# Prefixes every line of stdin with $1.
prefix() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        printf '%s %s\n' "$1" "$line"
    done
}

# ssh to host $1 running command $2, with a stdin that stays open while this script runs:
# when it closes (this script ended or was interrupted, or the connection dropped), the
# remote side interrupts what it started.
remote() {
    # The loop writes nothing, but holds the pipe open. It must not hold our stderr
    # (`prefix` reads it until every writer is gone), not even as a copy that a redirection
    # saves: hence exec.
    "${ssh_cmd[@]}" "$1" "$2" < <(
        exec 2>/dev/null
        while kill -0 $$; do sleep 2; done
    )
}

ship() {
    local h=$1
    git archive --format=tar HEAD |
        "${ssh_cmd[@]}" "$h" "mkdir -p $(q "$remote_dir") && tar -xf - -C $(q "$remote_dir")" &&
        "${ssh_cmd[@]}" "$h" "cd $(q "$remote_dir") && mkdir -p $(q "$(dirname "$matrix_rel")") && cat > $(q "$matrix_rel")" <"$matrix_abs"
}

# Whether this script still runs: background jobs ignore Ctrl-C, so they ask before each step.
alive() { kill -0 $$ 2>/dev/null; }

# Runs shard $2 on host $1, then fetches its results; records the exit status in $state.
run_shard() {
    local h=$1 k=$2
    local label="[$h $k/$n]"
    local rres="fanout-results/shard-$k-of-$n"
    local args="--shard $k/$n --results $rres"
    # make runs in its own session so that one signal reaches make, cargo and nicstorm; a
    # watcher interrupts it when stdin closes (see `remote`). Commands started with & by a
    # script get /dev/null as stdin (hence fd 3) and ignore SIGINT (hence SIGTERM, on which
    # nicstorm tears down as on Ctrl-C).
    # One line: quoted with %q it then needs no $'...', which not every login shell reads.
    local script
    script="cd $(q "$remote_dir") || exit 1; exec 3<&0;"
    # The copy has no .git: the build's --version and rows take the commit from here.
    script+=" NICSTORM_GIT_REVISION=$(q "$rev") setsid -w make matrix MATRIX=$(q "$matrix_rel") NICSTORM_RUN_ARGS=$(q "$args") </dev/null 3<&- & pid=\$!;"
    script+=" { cat <&3 >/dev/null; kill -TERM -- -\$pid; } >/dev/null 2>&1 & watcher=\$!; exec 3<&-;"
    script+=" wait \$pid; rc=\$?; kill \$watcher 2>/dev/null; exit \$rc"
    echo "$label starting: make matrix MATRIX=$matrix_rel NICSTORM_RUN_ARGS=\"$args\""
    {
        local rc=0
        remote "$h" "bash -c $(q "$script")" || rc=$?
        alive && echo "$rc" >"$state/$k.rc"
    } 2>&1 | prefix "$label"
    alive || return 0

    local dest=$work/$h-shard-$k-of-$n
    rm -rf "$dest"
    mkdir -p "$dest"
    # An empty archive when the shard left no results (e.g. more shards than cells).
    if "${ssh_cmd[@]}" "$h" "cd $(q "$remote_dir/$rres") 2>/dev/null && [ -d $(q "$name") ] && tar -cf - $(q "$name") || tar -cf - -T /dev/null" </dev/null |
        tar -xf - -C "$dest"; then
        echo "$label results copied to $dest"
    else
        echo "$label copying results back failed"
        echo copy >"$state/$k.copy"
    fi
}

run_host() {
    local h=$1 k
    shift
    if ! ship "$h" 2>&1 | prefix "[$h]"; then
        echo "[$h] copying the checkout failed"
        for k in "$@"; do echo ship >"$state/$k.copy"; done
        return
    fi
    echo "[$h] checkout $rev in ~/$remote_dir"
    for k in "$@"; do
        alive || return 0
        run_shard "$h" "$k"
    done
}

echo "fan-out: $name at $rev over $n shard(s):"
for i in $(seq 1 "$n"); do
    shown=$("$NICSTORM" plan "$matrix_abs" --shard "$i/$n")
    echo "  ${hosts[i - 1]}: ${shown%%$'\n'*}"
done
for h in "${order[@]}"; do
    # shellcheck disable=SC2086 # the list of shard numbers is meant to split
    run_host "$h" ${shards_of[$h]} &
done
wait

failed=()
code=0
for i in $(seq 1 "$n"); do
    h=${hosts[i - 1]}
    rc=$(cat "$state/$i.rc" 2>/dev/null || echo none)
    what=
    if [ -f "$state/$i.copy" ]; then
        case $(cat "$state/$i.copy") in
        ship) what="copying the checkout to the host failed" ;;
        *) what="copying the results back failed" ;;
        esac
        code=1
    elif [ "$rc" = none ]; then
        what="did not finish"
        code=1
    elif [ "$rc" = 3 ]; then
        what="some cells ended in error (exit 3)"
        [ $code = 1 ] || code=3
    elif [ "$rc" != 0 ]; then
        what="make matrix exited $rc"
        code=1
    fi
    if [ -n "$what" ]; then
        failed+=("shard $i/$n on $h: $what")
    fi
done

inputs=()
for d in "$work"/*/"$name"; do
    [ -d "$d" ] && inputs+=("$d")
done
if [ ${#inputs[@]} -gt 0 ]; then
    mkdir -p "$results"
    if ! "$NICSTORM" merge "$results/$name" "${inputs[@]}"; then
        failed+=("merging into $results/$name failed")
        code=1
    fi
else
    echo "fan-out: no shard brought results back"
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "fan-out: ${#failed[@]} problem(s):" >&2
    printf '  %s\n' "${failed[@]}" >&2
fi
exit "$code"
