#!/usr/bin/env bash
# Installs the system packages visionstack builds and tests with (Debian/Ubuntu).
# Idempotent: installs only what is missing. Needs root or sudo for apt-get.
#
#   scripts/install-deps.sh runtime   what building and running needs (make build, make demo)
#   scripts/install-deps.sh           that, and what the tests need (make test, .ci/run)
#   scripts/install-deps.sh example   that, and PyTorch to train the defects example (make example)
#
# runtime:
#   libvips-dev, pkg-config, gcc   libvips for govips (cgo): decode, resize, encode
#   nodejs, npm   fetch ONNX Runtime's library from the npm registry (scripts/install-onnxruntime.sh);
#                 the tests also run TensorFlow.js on Node.js as the face model's reference
# tests:
#   python3-opencv, opencv-data   the independent face detector that judges anonymization
#   google-cloud-cli-firestore-emulator, google-cloud-cli-pubsub-emulator (+ Java 17)
#                 Google's emulators the cloud backends are tested against; they come
#                 from Google's apt repository (packages.cloud.google.com), which must
#                 be configured for apt on machines that do not already have it
#   chromium      headless browser the review page's browser test drives (chromedp)
#   imagemagick   the peer `make bench` compares with (Google's Cloud Run sample method)
#   (downloaded, not installed) python3-skimage's sample photos: the no-face set the
#                 face model's precision is tested on (scripts/install-nofaces.sh)
# example:
#   python3-torch, python3-torchvision, python3-onnx   train and export the example's model
set -euo pipefail
pkgs=(libvips-dev pkg-config gcc)
# Node.js and npm: any install will do (this machine's came with them); Debian's if none.
command -v npm >/dev/null || pkgs+=(nodejs npm)
if [ "${1:-all}" = "example" ]; then
	pkgs+=(python3-torch python3-torchvision python3-onnx)
fi
if [ "${1:-all}" != "runtime" ]; then
	pkgs+=(python3-opencv opencv-data openjdk-17-jre-headless
		google-cloud-cli-firestore-emulator google-cloud-cli-pubsub-emulator chromium imagemagick)
fi
need=()
for pkg in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
here="$(cd "$(dirname "$0")" && pwd)"
# After the system packages: ONNX Runtime (the built-in face detector runs on it) and,
# for the tests, TensorFlow.js, the detector's reference runtime (pinned in package.json).
finish() {
	"$here/install-onnxruntime.sh" >/dev/null
	echo "onnxruntime: $("$here/install-onnxruntime.sh")"
	if [ "${1:-all}" != "runtime" ]; then
		ref="$here/../runtime/model/blazeface/reference"
		[ -d "$ref/node_modules/@tensorflow/tfjs-core" ] ||
			(cd "$ref" && npm install --no-audit --no-fund --silent)
		echo "tensorflow.js reference: installed"
		echo "no-face photos: $("$here/install-nofaces.sh")"
	fi
}
if [ ${#need[@]} -eq 0 ]; then
	echo "system packages: all present"
	finish "${1:-all}"
	exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "system packages: installed ${need[*]}"
finish "${1:-all}"
