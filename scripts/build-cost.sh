#!/usr/bin/env bash
# What `#[derive(tenant::TenantScoped)]` adds to the build of an application crate.
#
# Generates two throwaway crates under target/build-cost/, each with the same 50 SeaORM entities,
# one with `#[derive(tenant::TenantScoped)]` (and a `#[tenant(index(..))]`) on every `Model`, one
# without. Both depend on the same `tenant` (a snapshot of this workspace, so that edits made
# while the script runs cannot trigger a rebuild of it) and on the same sea-orm, and build into
# one shared target dir: the only difference is the derive. Each crate is built once to warm the
# dependencies, then timed, alternating between the two crates, RUNS times each:
#
#   incremental: `touch src/lib.rs && cargo build`     (an edit-and-rebuild)
#   clean:       `cargo clean -p <crate> && cargo build` (the crate from scratch, dependencies built)
#
# Debug builds by default, what developers wait for; PROFILE=release for the other one, and
# CARGO_INCREMENTAL=0 for a debug build without incremental compilation (as CI builds).
# TENANT_SRC=<dir> times another copy of this workspace (a change to the derive, say) instead of
# a snapshot of this one.
#
# Wall time on a shared machine drifts by several percent between runs of the same tree.
# COUNT=instructions counts instead the instructions of each crate's own `rustc` under valgrind
# (cachegrind, no cache simulation): repeatable to a few parts in 10,000 whatever the load, and
# slow (a few minutes per build). It counts three builds of each crate: a rebuild after `touch`
# (incremental), a clean build with incremental compilation, and one without.
#
#   scripts/build-cost.sh                # RUNS=5 ENTITIES=50 PROFILE=dev
#   RUNS=9 scripts/build-cost.sh
#   COUNT=instructions scripts/build-cost.sh
#   TENANT_SRC=/tmp/tenant-patched scripts/build-cost.sh
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/build-cost
runs=${RUNS:-5}
count=${COUNT:-time}
case $count in
time) ;;
instructions) command -v valgrind >/dev/null || { echo "COUNT=instructions needs valgrind" >&2; exit 1; } ;;
*) echo "COUNT is time or instructions, not '$count'" >&2; exit 1 ;;
esac
entities=${ENTITIES:-50}
profile=${PROFILE:-dev}
export CARGO_TARGET_DIR=$out/target

echo "build cost of #[derive(tenant::TenantScoped)]: $entities entities, profile $profile, $runs runs each"
echo "machine: $(nproc) CPUs, $(uptime | sed 's/.*load average/load average/')"
echo "toolchain: $(cd "$root" && rustc --version); CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-(default)}"

# A snapshot of the workspace's `tenant` crates (or of TENANT_SRC).
src=${TENANT_SRC:-$root}
echo "tenant from: $src"
rm -rf "$out/tenant" "$out/derived" "$out/plain"
mkdir -p "$out/tenant"
# `-m`: the files get the current time, so cargo rebuilds the snapshot's crates even when an
# older copy with other contents was built into the shared target dir before.
tar -C "$src" --exclude=./target --exclude=./.git -cf - . | tar -C "$out/tenant" -xmf -

# sea-orm exactly as the workspace declares it.
sea_orm=$(grep -E '^sea-orm = ' "$root/Cargo.toml")

# gen <dir> <crate name> <derived: 1|0>
gen() {
    local dir=$1 name=$2 derived=$3
    mkdir -p "$dir/src"
    cat >"$dir/Cargo.toml" <<EOF
[package]
name = "$name"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
tenant = { path = "../tenant" }
$sea_orm

# Not a member of the workspace around target/.
[workspace]
EOF
    cp "$root/Cargo.lock" "$dir/Cargo.lock"
    {
        echo "//! $entities entities$([ "$derived" = 1 ] && echo ', tenant-scoped')."
        for i in $(seq -w 0 $((entities - 1))); do
            local derive="" attr=""
            if [ "$derived" = 1 ]; then
                derive=", tenant::TenantScoped"
                attr="    #[tenant(index(created_at))]"
            fi
            cat <<EOF

pub mod entity_$i {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel$derive)]
    #[sea_orm(table_name = "entity_$i")]
$attr
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub note: Option<String>,
        pub quantity: i32,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
EOF
        done
    } >"$dir/src/lib.rs"
}

gen "$out/derived" build-cost-derived 1
gen "$out/plain" build-cost-plain 0

build() { (cd "$1" && cargo build --quiet --profile "$profile" "${@:2}"); }

echo "warming the dependencies (the first time this builds sea-orm, sqlx and tenant)..."
build "$out/derived"
build "$out/plain"
# Once more each, so that both timed modes start from a crate that was built at least twice.
build "$out/derived"
build "$out/plain"

# instructions <kind>: the instructions of the crate's rustc in the three builds, one line.
instructions() {
    local dir=$out/$1 cmd incdir runs_dir=$out/cachegrind
    mkdir -p "$runs_dir"
    touch "$dir/src/lib.rs"
    # The crate's own rustc invocation, as cargo runs it (the dependencies are built).
    cmd=$(cd "$dir" && cargo build --offline --profile "$profile" -v 2>&1 |
        sed -nE "s/^ *Running \`(.*--crate-name build_cost_$1 .*)\`\$/\1/p")
    [ -n "$cmd" ] || { echo "no rustc command line for build-cost-$1" >&2; exit 1; }
    incdir=
    if [[ $cmd == *" -C incremental="* ]]; then
        incdir=$(sed -E 's/.* -C incremental=([^ ]+).*/\1/' <<<"$cmd")
    fi
    count_one() { # <name> <command>
        (cd "$dir" && eval "valgrind --tool=cachegrind --cache-sim=no \
            --cachegrind-out-file=$runs_dir/$1-%p.out $2" >/dev/null 2>"$runs_dir/$1.log")
        sed -nE 's/.*I +refs: +([0-9,]+).*/\1/p' "$runs_dir/$1.log" | tr -d ,
    }
    touch "$dir/src/lib.rs"
    local rebuild clean noinc
    rebuild=$(count_one "$1-rebuild" "$cmd")
    [ -z "$incdir" ] || rm -rf "$incdir"
    clean=$(count_one "$1-clean" "$cmd")
    noinc=$(count_one "$1-noinc" "$(sed -E 's/ -C incremental=[^ ]+//' <<<"$cmd")")
    echo "$rebuild $clean $noinc"
}

if [ "$count" = instructions ]; then
    echo "counting instructions under valgrind (a few minutes per build)..."
    derived=$(instructions derived)
    plain=$(instructions plain)
    read -r d_rebuild d_clean d_noinc <<<"$derived"
    read -r p_rebuild p_clean p_noinc <<<"$plain"
    row() {
        awk -v what="$1" -v p="$2" -v d="$3" 'BEGIN {
            printf "| %s | %.3f G | %.3f G | %.3f | %+.1f%% |\n", what, p / 1e9, d / 1e9, d / p, (d / p - 1) * 100
        }'
    }
    echo
    echo "| instructions of the crate's rustc ($profile, $entities entities) | plain SeaORM | with the derive | ratio | added |"
    echo "|---|--:|--:|--:|--:|"
    row 'rebuild after `touch src/lib.rs` (incremental)' "$p_rebuild" "$d_rebuild"
    row 'clean build (incremental)' "$p_clean" "$d_clean"
    row 'clean build (`CARGO_INCREMENTAL=0`)' "$p_noinc" "$d_noinc"
    exit 0
fi

# ms <command..>: wall milliseconds of the command.
ms() {
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}

touch_build() {
    touch "$1/src/lib.rs"
    build "$1" --offline
}

clean_build() {
    (cd "$1" && cargo clean --quiet --profile "$profile" -p "$2")
    build "$1" --offline
}

declare -a inc_derived inc_plain clean_derived clean_plain
for run in $(seq 1 "$runs"); do
    # Alternate which goes first, so that drift of the machine hits both alike.
    if [ $((run % 2)) = 1 ]; then order="derived plain"; else order="plain derived"; fi
    for kind in $order; do
        t=$(ms touch_build "$out/$kind")
        if [ "$kind" = derived ]; then inc_derived+=("$t"); else inc_plain+=("$t"); fi
    done
    for kind in $order; do
        t=$(ms clean_build "$out/$kind" "build-cost-$kind")
        if [ "$kind" = derived ]; then clean_derived+=("$t"); else clean_plain+=("$t"); fi
    done
    echo "run $run/$runs: incremental derived ${inc_derived[-1]} ms, plain ${inc_plain[-1]} ms; clean derived ${clean_derived[-1]} ms, plain ${clean_plain[-1]} ms"
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

report() {
    local what=$1 d p
    d=$(median "${@:2:$runs}")
    p=$(median "${@:$((runs + 2))}")
    awk -v what="$what" -v d="$d" -v p="$p" 'BEGIN {
        printf "| %s | %.2f s | %.2f s | %.3f | %+.1f%% |\n", what, p / 1000, d / 1000, d / p, (d / p - 1) * 100
    }'
}

echo
echo "load after: $(uptime | sed 's/.*load average/load average/')"
echo
echo "| build ($profile, $entities entities, median of $runs) | plain SeaORM | with the derive | ratio | added |"
echo "|---|--:|--:|--:|--:|"
report 'touch src/lib.rs && cargo build' "${inc_derived[@]}" "${inc_plain[@]}"
report 'cargo clean -p <crate> && cargo build' "${clean_derived[@]}" "${clean_plain[@]}"
