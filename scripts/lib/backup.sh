# shellcheck shell=bash
# Backups of a deployment (used by deploy.sh and manage-service.sh). Source after common.sh.
#
# A backup is a directory $AE_BACKUP_DIR/analytics-engine-<YYYYmmdd-HHMMSS>-<version>/ holding the
# code and configuration of the install dir (not data/ or logs/), the installed unit file and
# BACKUP_INFO. The venv is copied with hard links (cp -al): pip never rewrites files in place, so a
# backup costs almost no space and restoring it needs no network.

AE_BACKUP_ITEMS=(bin lib runtime python config requirements.txt VERSION DEPLOY.md systemd scripts)

# backup_list -> backup names, oldest first
backup_list() {
    [[ -d "$AE_BACKUP_DIR" ]] || return 0
    find "$AE_BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d -name "$AE_SERVICE-*" -printf '%f\n' | sort
}

# backup_latest -> newest backup name (empty if none)
backup_latest() { backup_list | tail -n1; }

# backup_create TARGET REASON -> prints the new backup's path
backup_create() {
    local target="$1" reason="$2" version name dest n=1 item
    version=$(cut -d' ' -f1 "$target/VERSION" 2>/dev/null || true)
    name="$AE_SERVICE-$(date +%Y%m%d-%H%M%S)-${version:-unknown}"
    dest="$AE_BACKUP_DIR/$name"
    while [[ -e "$dest" ]]; do dest="$AE_BACKUP_DIR/$name.$((n++))"; done
    mkdir -p "$AE_BACKUP_DIR"
    chmod 700 "$AE_BACKUP_DIR"
    mkdir "$dest.partial"
    for item in "${AE_BACKUP_ITEMS[@]}"; do
        [[ -e "$target/$item" ]] && cp -a "$target/$item" "$dest.partial/"
    done
    if [[ -d "$target/venv" ]]; then
        cp -al "$target/venv" "$dest.partial/venv" 2>/dev/null || cp -a "$target/venv" "$dest.partial/venv"
    fi
    if [[ -f "$AE_UNIT_DIR/$AE_SERVICE.service" ]]; then
        cp -a "$AE_UNIT_DIR/$AE_SERVICE.service" "$dest.partial/unit.service"
    fi
    # a unit file in /etc/systemd/system (an older installation) shadows ours: keep it too
    if [[ -f "$AE_ETC_UNIT" && ! -L "$AE_ETC_UNIT" ]]; then
        cp -a "$AE_ETC_UNIT" "$dest.partial/unit-etc.service"
    fi
    {
        echo "created=$(date -Is)"
        echo "reason=$reason"
        echo "source=$target"
        echo "version=$(cat "$target/VERSION" 2>/dev/null || echo unknown)"
    } > "$dest.partial/BACKUP_INFO"
    mv "$dest.partial" "$dest"
    printf '%s\n' "$dest"
}

# backup_prune KEEP: delete all but the newest KEEP backups
backup_prune() {
    local keep="$1" all count old
    mapfile -t all < <(backup_list)
    count=${#all[@]}
    (( count > keep )) || return 0
    for old in "${all[@]:0:count-keep}"; do
        log_info "removing old backup $AE_BACKUP_DIR/$old"
        rm -rf "${AE_BACKUP_DIR:?}/$old"
    done
}

# backup_resolve NAME -> path of backup NAME (a name, a path, or empty = newest); fails if missing
backup_resolve() {
    local name="${1:-}"
    [[ -n "$name" ]] || name=$(backup_latest)
    [[ -n "$name" ]] || { log_error "no backups in $AE_BACKUP_DIR"; return 1; }
    [[ "$name" == /* ]] || name="$AE_BACKUP_DIR/$name"
    [[ -d "$name" && -f "$name/BACKUP_INFO" ]] || { log_error "not a backup: $name"; return 1; }
    printf '%s\n' "$name"
}

# backup_restore BACKUP_PATH TARGET: replace the code/config of TARGET (and the unit) by the backup's
backup_restore() {
    local src="$1" target="$2" item
    for item in "${AE_BACKUP_ITEMS[@]}"; do
        rm -rf "${target:?}/$item"
        [[ -e "$src/$item" ]] && cp -a "$src/$item" "$target/"
    done
    if [[ -d "$src/venv" ]]; then
        rm -rf "${target:?}/venv"
        cp -al "$src/venv" "$target/venv" 2>/dev/null || cp -a "$src/venv" "$target/venv"
    fi
    if [[ -f "$src/unit.service" ]]; then
        mkdir -p "$AE_UNIT_DIR"
        install -o root -g root -m 644 "$src/unit.service" "$AE_UNIT_DIR/$AE_SERVICE.service"
    fi
    if [[ -f "$src/unit-etc.service" ]]; then
        install -o root -g root -m 644 "$src/unit-etc.service" "$AE_ETC_UNIT"
    elif [[ -f "$AE_ETC_UNIT" && ! -L "$AE_ETC_UNIT" ]]; then
        rm -f "$AE_ETC_UNIT"
    fi
}
