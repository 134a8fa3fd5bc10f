#!/bin/sh
# Installs the editor clients the end-to-end tests drive (Debian packages).
# Idempotent: anything already installed is skipped.
set -eu

need=""
command -v nvim >/dev/null 2>&1 || need="$need neovim"

if [ -n "$need" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
fi
