#!/usr/bin/env bash
# Prints the host changes a feedrelay core map wants, and makes them with --apply.
#
#   scripts/tune-host.sh --config FILE [--apply] [--root DIR] [--feedrelay BIN]
#
# The core map is the config's `cores` (one worker per core). The changes:
#   - NIC interrupts: moved off the workers' cores, to the housekeeping CPUs (every
#     online CPU that is neither a worker nor a worker's SMT sibling);
#   - irqbalance: stopped, or it moves them back (only on the live host);
#   - CPU frequency governor of the workers' cores: performance;
#   - transparent huge pages: madvise (compaction stalls show up as latency spikes);
#   - net.core.rmem_max / wmem_max: at least 4 MiB;
#   - kernel.io_uring_disabled: 0.
# Boot-time settings (isolcpus, nohz_full, rcu_nocbs) cannot be changed on a running
# kernel: they are printed as a kernel command line to add, never applied.
#
# Dry run by default: every change is printed as "would:" and nothing is written. With
# --apply each is printed as "did:" (or "FAILED:") as it is made; nothing is silent.
# --root DIR reads and writes /sys and /proc under DIR (a copied tree, for testing).
# Exit status: 0 if nothing failed (with --apply) or nothing needed changing (dry run
# with --check), 1 if a change failed, 2 on bad arguments.
set -uo pipefail

apply=0
root=""
config=""
feedrelay=""
while [ $# -gt 0 ]; do
  case "$1" in
    --apply) apply=1 ;;
    --root) root="${2:?--root needs a directory}"; shift ;;
    --config) config="${2:?--config needs a file}"; shift ;;
    --feedrelay) feedrelay="${2:?--feedrelay needs a path}"; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "tune-host: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$config" ] || { echo "tune-host: --config FILE is required (its cores are the map)" >&2; exit 2; }
if [ -z "$feedrelay" ]; then
  here="$(cd "$(dirname "$0")/.." && pwd)"
  for c in "$here/target/release/feedrelay" "$here/target/debug/feedrelay" "$(command -v feedrelay || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then feedrelay="$c"; break; fi
  done
fi
[ -x "$feedrelay" ] || { echo "tune-host: no feedrelay binary; build it or pass --feedrelay" >&2; exit 2; }

topo=$("$feedrelay" topology --json --config "$config" --root "${root:-/}") || {
  echo "tune-host: feedrelay topology failed" >&2; exit 2; }

# A JSON array of numbers after "key": as space-separated numbers.
json_list() { printf '%s' "$topo" | grep -o "\"$1\":\[[0-9, ]*\]" | sed -n 1p | sed 's/.*\[//; s/\]//; s/,/ /g'; }
# "a b c" as a compact CPU list: 0-3,8.
to_cpulist() {
  local out="" start="" prev=""
  for c in $(printf '%s\n' $1 | sort -n | uniq); do
    if [ -z "$start" ]; then start=$c
    elif [ "$c" -ne $((prev + 1)) ]; then
      out+="${out:+,}$start$([ "$start" != "$prev" ] && echo "-$prev")"; start=$c
    fi
    prev=$c
  done
  [ -n "$start" ] && out+="${out:+,}$start$([ "$start" != "$prev" ] && echo "-$prev")"
  printf '%s' "$out"
}
path() { printf '%s%s' "$root" "$1"; }

workers=$(json_list workers)
if [ -z "$workers" ]; then
  echo "tune-host: $config pins no workers (no \`cores\`); nothing to tune for" >&2
  exit 2
fi
all=$(printf '%s' "$topo" | grep -o '{"cpu":[0-9]*' | sed 's/.*://')
siblings=""
for w in $workers; do
  s=$(printf '%s' "$topo" | grep -o "{\"cpu\":$w,\"node\":[0-9-]*,\"siblings\":\[[0-9, ]*\]" | sed 's/.*\[//; s/\]//; s/,/ /g')
  siblings+=" $s"
done
# Housekeeping: CPUs that are neither workers (nor their siblings) nor isolated (an
# isolated CPU that is not ours is kept for someone else's latency-sensitive work);
# if that leaves none, any CPU that is not a worker's.
isolated=$(json_list isolated)
housekeeping=""
for c in $all; do
  case " $workers $siblings $isolated " in *" $c "*) ;; *) housekeeping+=" $c" ;; esac
done
if [ -z "$housekeeping" ]; then
  for c in $all; do
    case " $workers $siblings " in *" $c "*) ;; *) housekeeping+=" $c" ;; esac
  done
fi
hk_list=$(to_cpulist "$housekeeping")
w_list=$(to_cpulist "$workers")
echo "core map $config: workers on $w_list; housekeeping (IRQs, the OS) on ${hk_list:-none}"
[ -n "$hk_list" ] || echo "note:  every CPU is a worker or a worker's sibling: no CPU left for interrupts"

changes=0
failed=0
# change DESCRIPTION FILE VALUE: write VALUE to FILE (or say we would).
change() {
  changes=$((changes + 1))
  if [ "$apply" = 1 ]; then
    if printf '%s\n' "$3" 2>/dev/null > "$2"; then echo "did:   $1"
    else echo "FAILED: $1 (writing $2)"; failed=1; fi
  else
    echo "would: $1"
  fi
}

# NIC interrupts: only those that can land on a worker's core move. They keep the
# CPUs they had that are not workers'; if none, they go to the housekeeping CPUs on the
# workers' NUMA node (the NIC's, in a good map), else to any housekeeping CPU.
node_of() { printf '%s' "$topo" | grep -o "{\"cpu\":$1,\"node\":[0-9-]*" | sed 's/.*://'; }
first=${workers%% *}
wnode=$(node_of "$first")
hk_local=""
for c in $housekeeping; do [ "$(node_of "$c")" = "$wnode" ] && hk_local+=" $c"; done
[ -n "$hk_local" ] || hk_local=$housekeeping
irqs=$(printf '%s' "$topo" | grep -o '"[0-9]* [^"]*":\[[0-9, ]*\]' | sed 's/^"//; s/":\[/ /; s/\]$//; s/,/ /g')
while read -r irq name cpus; do
  [ -n "$irq" ] || continue
  keep=""
  hit=0
  for c in $cpus; do
    case " $workers $siblings " in *" $c "*) hit=1 ;; *) keep+=" $c" ;; esac
  done
  [ "$hit" = 1 ] || continue
  want=$(to_cpulist "${keep:-$hk_local}")
  if [ -z "$want" ]; then
    echo "note:  irq $irq ($name) is on worker cores and there is no other CPU for it"
    continue
  fi
  change "irq $irq ($name): cpus $(to_cpulist "$cpus") → $want" "$(path /proc/irq/$irq/smp_affinity_list)" "$want"
done <<< "$irqs"
if [ -z "$root" ] && pgrep -x irqbalance >/dev/null 2>&1; then
  changes=$((changes + 1))
  if [ "$apply" = 1 ]; then
    if systemctl stop irqbalance 2>/dev/null; then echo "did:   stop irqbalance (it would move the interrupts back)"
    else echo "FAILED: stop irqbalance"; failed=1; fi
  else
    echo "would: stop irqbalance (systemctl stop irqbalance; it would move the interrupts back)"
  fi
fi

# Frequency governor of the workers' cores.
for w in $workers; do
  f=$(path "/sys/devices/system/cpu/cpu$w/cpufreq/scaling_governor")
  if [ -r "$f" ] && [ "$(cat "$f")" != performance ]; then
    change "cpu $w governor: $(cat "$f") → performance" "$f" performance
  fi
done

# Transparent huge pages.
f=$(path /sys/kernel/mm/transparent_hugepage/enabled)
if [ -r "$f" ] && grep -q '\[always\]' "$f"; then
  change "transparent huge pages: always → madvise" "$f" madvise
fi

# Socket buffer limits.
for k in rmem_max wmem_max; do
  f=$(path "/proc/sys/net/core/$k")
  if [ -r "$f" ] && [ "$(cat "$f")" -lt 4194304 ]; then
    change "net.core.$k: $(cat "$f") → 4194304" "$f" 4194304
  fi
done

# io_uring.
f=$(path /proc/sys/kernel/io_uring_disabled)
if [ -r "$f" ] && [ "$(cat "$f")" != 0 ]; then
  change "kernel.io_uring_disabled: $(cat "$f") → 0" "$f" 0
fi

# Boot-time isolation: printed, never applied.
missing=""
for w in $workers; do
  case " $isolated " in *" $w "*) ;; *) missing+=" $w" ;; esac
done
if [ -n "$missing" ] && [ -z "$hk_list" ]; then
  echo "note:  isolating the workers would leave no CPU for the OS; pin fewer workers"
elif [ -n "$missing" ]; then
  iso=$(to_cpulist "$workers $siblings")
  echo "boot:  cpus $(to_cpulist "$missing") are not isolated; add to the kernel command line and reboot:"
  echo "         isolcpus=nohz,domain,managed_irq,$iso nohz_full=$iso rcu_nocbs=$iso"
fi

if [ "$changes" = 0 ]; then
  echo "nothing to change now"
elif [ "$apply" = 0 ]; then
  echo "$changes change(s); run again with --apply (as root) to make them"
fi
exit "$failed"
