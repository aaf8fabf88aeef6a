#!/usr/bin/env bash
# Fetches the licensed no-face photos the precision tests build their set from: the
# sample images Debian's python3-skimage 0.19.3-8 ships (the package is downloaded,
# not installed: only its data files are used). Each file is checked against its
# pinned sha256; the photos and their licences are listed in testdata/photos/README.md.
# Prints the folder they are in (VISIONSTACK_NOFACES points the tests elsewhere).
set -euo pipefail
version=0.19.3-8
dest="${XDG_CACHE_HOME:-$HOME/.cache}/visionstack/nofaces/skimage-$version"
sums="7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf  brick.png
b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89  grass.png
c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12  gravel.png
8d23a7fb81f7cc877cd09f330357fc7f595651306e84e17252f6e0a1b3f61515  cell.png
a1e1be59aa447f8ce082f7fa809997ab369a2b137cb6c4202abc647c7ccf6456  microaneurysms.png
c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455  horse.png
f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955  clock_motion.png
596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb  chelsea.png
cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7  coffee.png
3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4  hubble_deep_field.jpg
38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6  retina.jpg
c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c  rocket.jpg
bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1  text.png
f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef  ihc.png"
if [ -d "$dest" ] && (cd "$dest" && echo "$sums" | sha256sum --check --status); then
	echo "$dest"
	exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq "python3-skimage=$version" 2>/dev/null) || {
	echo "could not download python3-skimage $version with apt-get download: the no-face photos need Debian's apt sources" >&2
	exit 1
}
dpkg-deb -x "$tmp"/python3-skimage_*.deb "$tmp/x"
mkdir -p "$dest"
data="$tmp/x/usr/lib/python3/dist-packages/skimage/data"
echo "$sums" | while read -r _ f; do cp "$data/$f" "$dest/$f"; done
(cd "$dest" && echo "$sums" | sha256sum --check --quiet) || { echo "no-face photos: checksum mismatch in $dest" >&2; exit 1; }
echo "$dest"
