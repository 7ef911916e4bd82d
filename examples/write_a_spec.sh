#!/usr/bin/env bash
# Check a spec you wrote, count it, and draw it:  bash examples/write_a_spec.sh [OUTDIR]
set -euo pipefail
spec="$(dirname "$0")/write_a_spec.yaml"
out="${1:-.}"

netspec validate "$spec"                               # syntax, options, every shape
netspec validate "$spec" --set width=32                # the same spec, twice as wide
netspec params "$spec" --depth 0                       # one row per stage
netspec graph "$spec" -o "$out/tiny_resnet.dot"        # Graphviz text; no dot needed
netspec graph "$spec" -o "$out/tiny_resnet.mmd" --depth 0   # Mermaid, stages collapsed
