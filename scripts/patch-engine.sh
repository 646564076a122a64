#!/usr/bin/env bash
# Prepares the engine crates that llmserve builds against: the exact crates.io sources of each crate named
# under patches/ (patches/<crate>-<version>/), checked against the SHA-256 pinned in patches/crates.sha256,
# with our own patches applied in file-name order, into .patched-by-scripts-patch-engine.sh/<crate>-<version>/
# (git-ignored; Cargo.toml's `[patch.crates-io]` points there, and a plain `cargo build` run before this
# script fails on that missing directory, whose name says what to run). Run it before any cargo command; scripts/serve.sh, scripts/test.sh,
# scripts/check-cuda.sh and the Dockerfile do. Fast when nothing changed: a stamp holds the hashes of the
# source and of every patch, and a crate is rebuilt only when they differ.
#
# Sources come from cargo's own download cache when cargo has fetched them before (cargo checked them against
# the registry's checksum), else from static.crates.io; either way the pinned checksum must match.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
out="$root/.patched-by-scripts-patch-engine.sh"
sums="$root/patches/crates.sha256"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

fail() {
  echo "scripts/patch-engine.sh: $*" >&2
  exit 1
}

# The .crate archive of name-version, verified, as a path.
crate_archive() {
  local file="$1" want cached
  want="$(awk -v f="$file" '$2 == f {print $1}' "$sums")"
  [ -n "$want" ] || fail "no checksum for $file in patches/crates.sha256"
  for cached in "$cargo_home"/registry/cache/*/"$file"; do
    if [ -f "$cached" ] && [ "$(sha256sum "$cached" | cut -d' ' -f1)" = "$want" ]; then
      echo "$cached"
      return
    fi
  done
  mkdir -p "$out/.downloads"
  local dest="$out/.downloads/$file"
  if [ ! -f "$dest" ] || [ "$(sha256sum "$dest" | cut -d' ' -f1)" != "$want" ]; then
    local name="${file%-*}"
    name="${name%.crate}"
    curl -sSfL --retry 3 -o "$dest.part" "https://static.crates.io/crates/$name/$file" \
      || fail "could not download $file from static.crates.io"
    mv "$dest.part" "$dest"
  fi
  local got
  got="$(sha256sum "$dest" | cut -d' ' -f1)"
  [ "$got" = "$want" ] || fail "$file: checksum $got, expected $want (patches/crates.sha256)"
  echo "$dest"
}

mkdir -p "$out"
for dir in "$root"/patches/*/; do
  crate="$(basename "$dir")"            # e.g. mistralrs-core-0.8.1
  [ "$crate" = "*" ] && continue
  archive="$(crate_archive "$crate.crate")"
  # The stamp: the source's checksum, then each patch's name and hash, then this script's hash.
  stamp="$( (sha256sum "$archive" | cut -d' ' -f1
             cd "$dir" && for p in *.patch; do [ -f "$p" ] && sha256sum "$p"; done
             sha256sum "$root/scripts/patch-engine.sh" | cut -d' ' -f1) )"
  target="$out/$crate"
  if [ -f "$target/.llmserve-stamp" ] && [ "$(cat "$target/.llmserve-stamp")" = "$stamp" ]; then
    continue
  fi
  # Work outside the repository: `git apply` inside a work tree resolves paths from the tree's root.
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  tar -xzf "$archive" -C "$work"
  [ -d "$work/$crate" ] || fail "$archive does not unpack to $crate/"
  for patch in "$dir"*.patch; do
    [ -f "$patch" ] || continue
    if ! (cd "$work/$crate" && git apply --check -p1 "$patch" 2>"$work/why"); then
      echo "scripts/patch-engine.sh: $(basename "$patch") no longer applies to $crate:" >&2
      sed 's/^/  /' "$work/why" >&2
      fail "refresh the patch against $crate's sources, or drop it (see README, \"The engine is patched\")"
    fi
    (cd "$work/$crate" && git apply -p1 "$patch")
  done
  # The patches as applied, for build.rs to compare with patches/ (it refuses to build on a stale copy).
  mkdir "$work/$crate/.llmserve-patches"
  for patch in "$dir"*.patch; do [ -f "$patch" ] && cp "$patch" "$work/$crate/.llmserve-patches/"; done
  echo "$stamp" >"$work/$crate/.llmserve-stamp"
  rm -rf "$target.old"
  [ -d "$target" ] && mv "$target" "$target.old"
  # Same file system as the target: the move is a rename.
  cp -a "$work/$crate" "$target.new"
  mv "$target.new" "$target"
  rm -rf "$target.old" "$work"
  trap - EXIT
  echo "scripts/patch-engine.sh: prepared $crate with $(find "$dir" -name '*.patch' | wc -l) patch(es)" >&2
done
