#!/usr/bin/env bash
# Fails when a component #includes another component it may not know (docs/architecture.md),
# or a private header of another component (only <component>/<component>.hpp is public, and the
# few headers in extra_public).
set -euo pipefail
src="${1:?usage: include_rules.sh SRC_DIR}"
declare -A allowed=(
    [core]=""
    [metrics]="core"
    [store]="core"
    [net]="core"
    [proc]="core net"
    [drivers]="core net proc"
    [jobs]="core store net proc fleet metrics drivers"
    [fleet]="core store net metrics"
    [notify]="core store net metrics"
    [logs]="core store"
    [supervisor]="core net proc metrics"
    [probes]="core store net proc metrics jobs supervisor"
    [config]="core net store fleet drivers jobs notify logs supervisor probes"
    [api]="core store net proc fleet metrics config drivers jobs notify logs supervisor probes"
    [cli]="core net proc config api drivers supervisor probes"
)
# Public headers besides <component>/<component>.hpp: narrow facilities kept out of the main
# header, which nearly every file includes (docs/architecture.md, "Components").
extra_public=" core/regex.hpp logs/shipper.hpp net/json_path.hpp "
status=0
for component in "${!allowed[@]}"; do
    [[ -d "$src/$component" ]] || continue
    while IFS= read -r line; do
        file="${line%%:*}"
        included=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"${line#*:}")
        target="${included%%/*}"
        [[ "$included" == */* ]] || continue
        if [[ "$target" == "$component" ]]; then
            continue
        fi
        if [[ " ${allowed[$component]} " != *" $target "* ]]; then
            echo "$file: $component may not include $included ($component knows: ${allowed[$component]:-nothing})"
            status=1
        elif [[ "$included" != "$target/$target.hpp" && "$extra_public" != *" $included "* ]]; then
            echo "$file: $included is private to $target; include $target/$target.hpp"
            status=1
        fi
    done < <(grep -rn --include='*.cpp' --include='*.hpp' --include='*.in' '#include "' "$src/$component" || true)
done
if [[ $status -eq 0 ]]; then
    echo "include rules hold"
fi
exit $status
