#!/usr/bin/env bash
# Installs ONNX Runtime's shared library, which the built-in BlazeFace face detector
# runs on, from the npm package onnxruntime-node (pinned version, checked sha256).
# Idempotent. Prints the library's path; the runtime finds it there by itself, or
# wherever VISIONSTACK_ONNXRUNTIME points.
#
#   scripts/install-onnxruntime.sh [DIR]   default DIR: ~/.cache/visionstack/onnxruntime
set -euo pipefail
version=1.30.0
sha=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
dir="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/visionstack/onnxruntime}/$version"
lib="$dir/libonnxruntime.so"
case "$(uname -m)" in
x86_64) arch=x64 ;;
aarch64 | arm64) arch=arm64 ;;
*) echo "install-onnxruntime: no ONNX Runtime build for $(uname -m) in onnxruntime-node" >&2; exit 1 ;;
esac
if [ -s "$lib" ]; then
	echo "$lib"
	exit 0
fi
command -v npm >/dev/null || { echo "install-onnxruntime: npm is needed (apt-get install nodejs npm)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tgz="$tmp/onnxruntime-node-$version.tgz"
echo "$sha  $tgz" | sha256sum -c --quiet - || { echo "install-onnxruntime: checksum mismatch for onnxruntime-node@$version" >&2; exit 1; }
tar -xzf "$tgz" -C "$tmp" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" package/package.json
mkdir -p "$dir"
cp "$tmp/package/package.json" "$dir/package.json" # "license": "MIT" (ONNX Runtime, Microsoft)
cp "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "$lib"
