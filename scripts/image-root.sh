#!/usr/bin/env bash
# Runs in the Dockerfile's build stage: gathers into ROOT the smallest Debian root that runs the
# exporter installed in VENV: the interpreter, its standard library without what a server never
# imports (tests, IDLE, tkinter, ensurepip, lib2to3, ...), every shared library the interpreter
# and the extension modules load (found with ldd, so a new dependency's library comes along),
# the dynamic loader's cache, root's passwd entry and the virtualenv. Byte-compiled, because the
# image runs read-only with PYTHONDONTWRITEBYTECODE.
set -euo pipefail
ROOT=$1
VENV=$2

python=$(readlink -f /usr/bin/python3)
version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
multiarch=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("MULTIARCH"))')
stdlib=/usr/lib/python$version

# Debian's merged /usr: the same links, so the loader's /lib64/ld-linux-*.so.2 resolves.
mkdir -p "$ROOT"/usr/bin "$ROOT"/usr/lib/"$multiarch" "$ROOT"/usr/lib64 "$ROOT"/etc "$ROOT"/tmp \
    "$ROOT"/proc "$ROOT"/sys "$ROOT"/dev "$ROOT"/run "$ROOT"/var/run
chmod 1777 "$ROOT"/tmp
ln -s usr/bin "$ROOT"/bin
ln -s usr/lib "$ROOT"/lib
ln -s usr/lib64 "$ROOT"/lib64

# A path and, if it is a link, what it points to, with the same layout under ROOT.
copy() {
    local path=$1
    cp -a --parents "$path" "$ROOT"
    if [ -L "$path" ]; then
        cp -a --parents "$(readlink -f "$path")" "$ROOT"
    fi
}

copy "$python"
ln -s "python$version" "$ROOT"/usr/bin/python3

# The standard library, less what a server never imports.
lib=${stdlib#/}  # tar's member names have no leading slash
tar -C / -c --exclude='__pycache__' \
    --exclude="$lib/test" --exclude="$lib/*/test" --exclude="$lib/*/tests" \
    --exclude="$lib/idlelib" --exclude="$lib/tkinter" --exclude="$lib/turtledemo" \
    --exclude="$lib/turtle.py" --exclude="$lib/ensurepip" --exclude="$lib/lib2to3" \
    --exclude="$lib/pydoc_data" --exclude="$lib/distutils" --exclude="$lib/venv" \
    --exclude="$lib/config-*" --exclude="$lib/dist-packages" \
    --exclude="$lib/lib-dynload/_tkinter*" "$lib" | tar -C "$ROOT" -x
# sitecustomize and friends Debian keeps in /etc.
if [ -d "/etc/python$version" ]; then
    cp -a --parents "/etc/python$version" "$ROOT"
fi

mkdir -p "$ROOT$(dirname "$VENV")"
cp -a "$VENV" "$ROOT$VENV"
find "$ROOT$VENV" -name '__pycache__' -prune -exec rm -rf {} +

# Every library the interpreter and every extension module needs, by ldd.
objects=("$python")
while IFS= read -r -d '' so; do
    objects+=("$so")
done < <(find "$ROOT$stdlib/lib-dynload" "$ROOT$VENV" -name '*.so*' -type f -print0)
for object in "${objects[@]}"; do
    ldd "$object" | awk '/=>/ { print $3 } !/=>/ && $1 ~ /^\// { print $1 }'
done | sort -u | while read -r lib; do
    [ -n "$lib" ] && [ -e "$lib" ] && copy "$lib"
done
# ctypes loads libc by name (the ip_tables reader's getsockopt).
copy "/usr/lib/$multiarch/libc.so.6"
printf '/usr/lib/%s\n' "$multiarch" >"$ROOT"/etc/ld.so.conf
ldconfig -r "$ROOT"

echo 'root:x:0:0:root:/root:/sbin/nologin' >"$ROOT"/etc/passwd
echo 'root:x:0:' >"$ROOT"/etc/group
cp -L /etc/os-release "$ROOT"/etc/os-release

# Byte-compiled in place, with the paths tracebacks will show (not the build root's).
"$python" -m compileall -q -j 0 -s "$ROOT" -p / "$ROOT$stdlib" "$ROOT$VENV/lib"

echo "image-root: $(du -sh "$ROOT" | cut -f1) in $ROOT" >&2
