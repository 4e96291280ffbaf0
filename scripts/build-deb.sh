#!/bin/bash
# make deb: dist/dom0_<version>_all.deb, built by dpkg-buildpackage with Debian's Python tooling (debian/) from the
# sdist `make dist` wrote, unpacked under build/deb so the checkout stays clean.
# The dissect disk-image readers Debian does not package are downloaded here as pure-Python wheels, pinned to the
# versions in .venv (what the tests ran against), into build/vendor-wheels (never committed).
# Usage: scripts/build-deb.sh        (as root on Debian 12, after make dist)
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "error: $1" >&2
  echo "hint: $2" >&2
  exit 1
}

# Debian's own interpreter and tools, not a pyenv or venv python earlier on PATH.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
sdist=dist/dom0-$version.tar.gz
[ -f "$sdist" ] || fail "$sdist does not exist" "run make dist first (make deb does)"

BUILD_DEPENDS=(dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools python3-wheel)
missing=()
for p in "${BUILD_DEPENDS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "missing build dependencies: ${missing[*]}" "as root: apt-get install ${missing[*]}"
  echo "deb: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  }
fi

changelog=$(dpkg-parsechangelog -S Version)
[ "$changelog" = "$version" ] ||
  fail "debian/changelog's version is $changelog, pyproject.toml's $version" "add a changelog entry: dch -v $version"

# dissect.* as the venv has them (the readers and what they pull in: dissect.cstruct, dissect.util).
mapfile -t pins < <(.venv/bin/python - <<'EOF'
from importlib.metadata import distributions
pins = {f"{d.metadata['Name']}=={d.version}" for d in distributions() if d.metadata["Name"].startswith("dissect.")}
print("\n".join(sorted(pins)))
EOF
)
[ ${#pins[@]} -gt 0 ] || fail "no dissect package in .venv" "run make setup"
wheels=build/vendor-wheels
mkdir -p "$wheels"
for pin in "${pins[@]}"; do
  file=$(echo "${pin%%==*}" | tr . _)-${pin##*==}-py3-none-any.whl
  [ -f "$wheels/$file" ] && continue
  # the pure-Python wheel (dissect.util also has a native one): the package is Architecture: all
  if ! .venv/bin/pip download -q --no-deps --only-binary=:all: --platform any --implementation py --abi none \
    --python-version 3.11 -d "$wheels" "$pin" >"$wheels/download.log" 2>&1; then
    cat "$wheels/download.log" >&2
    fail "cannot download $pin" "check the network and PyPI"
  fi
  [ -f "$wheels/$file" ] || fail "pip download did not leave $wheels/$file" "download it by hand into $wheels"
done

work=build/deb
rm -rf "$work"
mkdir -p "$work"
tar -xzf "$sdist" -C "$work"
src=$work/dom0-$version
mkdir -p "$src/vendor"
for pin in "${pins[@]}"; do
  cp "$wheels/$(echo "${pin%%==*}" | tr . _)-${pin##*==}-py3-none-any.whl" "$src/vendor/"
done

echo "deb: dpkg-buildpackage in $src (log: $work/build.log)"
if ! (cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
  tail -n 30 "$work/build.log" >&2
  fail "dpkg-buildpackage failed (the end of its log is above)" "read $work/build.log"
fi
deb=$work/dom0_${version}_all.deb
rm -f dist/dom0_*.deb
cp "$deb" dist/
echo "deb: dist/${deb##*/}"
