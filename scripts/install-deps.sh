#!/usr/bin/env bash
# Installs the system packages visionstack builds and tests with (Debian/Ubuntu).
# Idempotent: installs only what is missing. Needs root or sudo for apt-get.
#   libvips-dev   libvips for govips (cgo): decode, resize, encode
#   pkg-config    cgo finds libvips through it
#   python3-opencv, opencv-data   the independent face detector that judges anonymization
#   google-cloud-cli-firestore-emulator, google-cloud-cli-pubsub-emulator (+ Java 17)
#                 Google's emulators the cloud backends are tested against; they come
#                 from Google's apt repository (packages.cloud.google.com), which must
#                 be configured for apt on machines that do not already have it
#   chromium      headless browser the review page's browser test drives (chromedp)
set -euo pipefail
need=()
for pkg in libvips-dev pkg-config gcc python3-opencv opencv-data openjdk-17-jre-headless \
	google-cloud-cli-firestore-emulator google-cloud-cli-pubsub-emulator chromium; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
	echo "system packages: all present"
	exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "system packages: installed ${need[*]}"
