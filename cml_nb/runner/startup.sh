#!/bin/bash
# cml-nb runner startup script (cloud-init user-data), rendered by cml_nb.runner.script.
#
# First boot (cloud-init runs this file once per instance): it moves the registration
# secret into a root-only file, saves a copy of itself without the secret, writes the
# systemd units that keep the guards across reboots, deletes cloud-init's copies of
# the user-data, and starts the runner service. The service (every boot) arms the
# max-lifetime shutdown, blocks jobs from the instance metadata service, registers
# once (then the secret is gone or worthless), runs the agent, and shuts the machine
# down (which terminates it) when idle. Every guard fails closed: a guard that cannot
# be set up shuts the machine down instead of running jobs without it.
# Do not print this file: it holds a runner registration secret.
set -Eeuo pipefail
umask 077

# @CONFIG@

AGENT_PID=""
METRICS_UNKNOWN=0

log() {
  printf '%s cml-nb-runner: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" | tee -a "$LOG_FILE" >&2
}

runner_home() {
  getent passwd "$RUNNER_USER" | cut -d: -f6
}

# Secrets reach the agent in its environment (runuser keeps it), never in argv,
# which every user of the machine can read in the process list.
as_runner_user() {
  if [ "$(id -un)" = "$RUNNER_USER" ]; then
    "$@"
  else
    runuser -u "$RUNNER_USER" -- env HOME="$(runner_home)" "$@"
  fi
}

# Runs in the background as "exec_as_runner_user cmd &", so that $! is the agent itself.
exec_as_runner_user() {
  if [ "$(id -un)" = "$RUNNER_USER" ]; then
    exec "$@"
  else
    exec runuser -u "$RUNNER_USER" -- env HOME="$(runner_home)" "$@"
  fi
}

unregister() {
  if [ "$FORGE" = gitlab ] && [ -e "$GITLAB_CONFIG" ] && command -v gitlab-runner >/dev/null 2>&1; then
    # Deletes the runner on GitLab with its own token, so nothing is left behind.
    gitlab-runner unregister --config "$GITLAB_CONFIG" --all-runners >/dev/null 2>&1 || true
  fi
}

power_off() {
  log "shutting down: $1"
  if [ -n "$AGENT_PID" ]; then
    if [ "$FORGE" = github ]; then
      # A listener stopped by stop_taking_jobs (and runuser, which stops with its
      # child) ends on the pending SIGTERM as soon as it runs again.
      pkill -TERM -u "$RUNNER_USER" -f 'Runner\.Listener' 2>/dev/null || true
      resume_listener
    fi
    kill -TERM "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
  fi
  unregister
  # The instance is launched with shutdown behaviour "terminate".
  shutdown -h now "cml-nb: $1"
}

# A guard that cannot be set up means no runner: shut down rather than run without it.
fail_closed() {
  trap - ERR
  power_off "$1"
  exit 1
}

check_gpu() {
  if [ "$EXPECT_GPU" != 1 ]; then
    return 0
  fi
  local deadline
  # The driver can still be loading right after boot: give it GPU_WAIT_SECONDS.
  deadline=$(($(date +%s) + GPU_WAIT_SECONDS))
  until nvidia-smi >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "nvidia-smi fails: no working GPU driver on this image (pass an AMI with NVIDIA drivers)"
      return 1
    fi
    sleep "$POLL_SECONDS"
  done
  log "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | paste -sd ';' -)"
}

ensure_user() {
  if ! id -u "$RUNNER_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$RUNNER_USER"
  fi
}

install_cml_nb() {
  if command -v cml-nb >/dev/null 2>&1; then
    return 0
  fi
  log "installing $CML_NB_SPEC"
  if ! python3 -m venv /opt/cml-nb >/dev/null 2>&1; then
    apt-get update -q && apt-get install -y -q python3-venv
    python3 -m venv /opt/cml-nb
  fi
  /opt/cml-nb/bin/pip install --quiet "$CML_NB_SPEC"
  ln -sf /opt/cml-nb/bin/cml-nb /usr/local/bin/cml-nb
}

install_agent() {
  if [ "$FORGE" = github ]; then
    if [ -x "$RUNNER_DIR/run.sh" ]; then
      return 0
    fi
    log "installing the GitHub Actions runner $RUNNER_VERSION"
    mkdir -p "$RUNNER_DIR"
    curl -fsSL --retry 5 -o /tmp/actions-runner.tar.gz \
      "https://github.com/actions/runner/releases/download/v${RUNNER_VERSION}/actions-runner-linux-${RUNNER_ARCH}-${RUNNER_VERSION}.tar.gz"
    tar -xzf /tmp/actions-runner.tar.gz -C "$RUNNER_DIR"
    "$RUNNER_DIR/bin/installdependencies.sh" >/dev/null
    chown -R "$RUNNER_USER" "$RUNNER_DIR"
  else
    if command -v gitlab-runner >/dev/null 2>&1; then
      return 0
    fi
    log "installing gitlab-runner"
    curl -fsSL --retry 5 https://packages.gitlab.com/install/repositories/runner/gitlab-runner/script.deb.sh | bash
    apt-get install -y -q gitlab-runner
    # This script runs the agent itself, so that it can watch it.
    systemctl disable --now gitlab-runner >/dev/null 2>&1 || true
  fi
}

toml_string() {
  local value=${1//\\/\\\\}
  printf '"%s"' "${value//\"/\\\"}"
}

# GitLab: the runner authentication token from the user-data stays readable there (the
# metadata service, the cloud's API) for the machine's life, so it is swapped for a
# new one before any job runs, which makes that copy worthless. The new token lives
# only in gitlab-runner's root-only config.
register_gitlab() {
  local old answer new
  old=$(<"$STATE_DIR/registration")
  # Reset by the current token: docs.gitlab.com/ee/api/runners.html
  # #reset-runners-authentication-token-by-using-the-current-token (the body is read
  # from stdin, so the token is in no process's argv).
  if ! answer=$(printf 'token=%s' "$old" | curl -fsS --max-time 60 --retry 3 --data-binary @- \
    "$FORGE_URL/api/v4/runners/reset_authentication_token" 2>/dev/null); then
    fail_closed "GitLab refused to reset the runner token, so the copy in the user-data would stay valid"
  fi
  if ! [[ $answer =~ \"token\"[[:space:]]*:[[:space:]]*\"([^\"]+)\" ]]; then
    fail_closed "GitLab's answer to the token reset has no token"
  fi
  new=${BASH_REMATCH[1]}
  mkdir -p "$(dirname "$GITLAB_CONFIG")"
  {
    printf 'concurrent = 1\ncheck_interval = 0\n\n[[runners]]\n'
    printf '  name = %s\n  url = %s\n' "$(toml_string "$RUNNER_NAME")" "$(toml_string "$FORGE_URL")"
    printf '  token = "%s"\n  executor = "shell"\n' "$new"
  } >"$GITLAB_CONFIG"
  chmod 600 "$GITLAB_CONFIG"
}

# Registers (first start only) and starts the agent in the background.
start_agent() {
  local first=0
  if [ ! -e "$STATE_DIR/registered" ]; then
    first=1
    if [ ! -s "$STATE_DIR/registration" ]; then
      fail_closed "no registration secret (it is used once, at the first start)"
    fi
  elif [ "$SINGLE" = 1 ]; then
    fail_closed "the single-job runner restarted (its job, if any, was lost)"
  fi
  if [ "$FORGE" = github ]; then
    cd "$RUNNER_DIR"
    if [ "$REGISTRATION_KIND" = jit ]; then
      # The runner reads --jitconfig from ACTIONS_RUNNER_INPUT_JITCONFIG and removes it
      # from its environment; a JIT config is single use.
      ACTIONS_RUNNER_INPUT_JITCONFIG=$(<"$STATE_DIR/registration")
      export ACTIONS_RUNNER_INPUT_JITCONFIG
      rm -f "$STATE_DIR/registration"
      exec_as_runner_user ./run.sh &
      unset ACTIONS_RUNNER_INPUT_JITCONFIG
    else
      if [ "$first" = 1 ]; then
        local ephemeral=()
        if [ "$SINGLE" = 1 ]; then
          ephemeral=(--ephemeral)
        fi
        ACTIONS_RUNNER_INPUT_TOKEN=$(<"$STATE_DIR/registration")
        export ACTIONS_RUNNER_INPUT_TOKEN
        rm -f "$STATE_DIR/registration"
        as_runner_user ./config.sh --unattended --replace --url "$FORGE_URL" \
          --name "$RUNNER_NAME" --labels "$LABELS" --work _work "${ephemeral[@]}" >/dev/null
        unset ACTIONS_RUNNER_INPUT_TOKEN
      fi
      exec_as_runner_user ./run.sh &
    fi
  else
    if [ "$first" = 1 ]; then
      register_gitlab
      rm -f "$STATE_DIR/registration"
    fi
    mkdir -p "$RUNNER_DIR"
    chown "$RUNNER_USER" "$RUNNER_DIR"
    # A background job of a script starts with SIGQUIT ignored: restore it, it is
    # how stop_taking_jobs asks gitlab-runner to finish its jobs and take no more.
    (
      trap - QUIT
      exec gitlab-runner run --config "$GITLAB_CONFIG" --user "$RUNNER_USER" \
        --working-directory "$RUNNER_DIR" --listen-address "127.0.0.1:${METRICS_PORT}"
    ) &
  fi
  AGENT_PID=$!
  touch "$STATE_DIR/registered"
  log "runner agent started as $RUNNER_NAME (labels: $LABELS)"
}

# Whether the agent may be running a job right now; "cannot tell" counts as busy (the
# max-lifetime guard still ends a runner that never becomes readable).
runner_busy() {
  if [ "$FORGE" = github ]; then
    # The listener starts one Runner.Worker process per job.
    pgrep -u "$RUNNER_USER" -f 'Runner\.Worker' >/dev/null 2>&1
    return
  fi
  local metrics
  if ! metrics=$(curl -fsS --max-time 10 "http://127.0.0.1:${METRICS_PORT}/metrics" 2>/dev/null) ||
    [[ $metrics != *gitlab_runner_* ]]; then
    if [ "$METRICS_UNKNOWN" = 0 ]; then
      log "gitlab-runner's metrics on port $METRICS_PORT are unreadable: counting the runner as busy"
    fi
    METRICS_UNKNOWN=1
    return 0
  fi
  METRICS_UNKNOWN=0
  awk '/^gitlab_runner_jobs[{ ]/ { jobs += $NF } END { exit !(jobs > 0) }' <<<"$metrics"
}

resume_listener() {
  pkill -CONT -u "$RUNNER_USER" -f 'Runner\.Listener' 2>/dev/null || true
  kill -CONT "$AGENT_PID" 2>/dev/null || true
}

# Stops the agent taking jobs, then looks again: a job accepted while the idle timeout
# fired is served, not killed. Returns 0 when the machine may go, 1 to keep serving.
stop_taking_jobs() {
  if [ "$FORGE" = gitlab ]; then
    # SIGQUIT: gitlab-runner takes no new job and exits once its running jobs are done
    # (docs.gitlab.com/runner/commands/#signals).
    kill -QUIT "$AGENT_PID" 2>/dev/null || true
    log "idle: gitlab-runner stops taking jobs and finishes any it has"
    wait "$AGENT_PID" 2>/dev/null || true
    AGENT_PID=""
    return 0
  fi
  # A stopped listener cannot take a job; one it has not acquired is offered to
  # another runner, and one it has acquired already has its Runner.Worker.
  pkill -STOP -u "$RUNNER_USER" -f 'Runner\.Listener' 2>/dev/null || true
  if runner_busy; then
    resume_listener
    log "a job started as the idle timeout fired: serving it"
    return 1
  fi
  return 0
}

watch_idle() {
  local last_active now busy_seen=0
  last_active=$(date +%s)
  while :; do
    if ! kill -0 "$AGENT_PID" 2>/dev/null; then
      power_off "the runner agent exited"
      return 0
    fi
    if runner_busy; then
      last_active=$(date +%s)
      busy_seen=1
    elif [ "$SINGLE" = 1 ] && [ "$busy_seen" = 1 ]; then
      power_off "its single job finished"
      return 0
    else
      now=$(date +%s)
      # date +%s counts whole seconds: -gt makes the idle time at least the timeout.
      if [ $((now - last_active)) -gt "$IDLE_TIMEOUT_SECONDS" ]; then
        if stop_taking_jobs; then
          power_off "idle for ${IDLE_TIMEOUT_SECONDS}s"
          return 0
        fi
        last_active=$(date +%s)
        busy_seen=1
      fi
    fi
    sleep "$POLL_SECONDS"
  done
}

# The user-data (with the registration secret) is readable from the instance metadata
# service: jobs, which run as RUNNER_USER, must not reach it. No block, no runner.
protect_metadata() {
  if [ "$(id -u "$RUNNER_USER")" = 0 ]; then
    fail_closed "jobs would run as root and could read the instance metadata: use a non-root runner user"
  fi
  local address tool
  for address in $METADATA_ADDRESSES; do
    tool=iptables
    if [[ $address == *:* ]]; then
      tool=ip6tables
    fi
    if ! "$tool" -I OUTPUT -d "$address" -m owner --uid-owner "$RUNNER_USER" -j REJECT; then
      fail_closed "could not block the instance metadata service ($address) for $RUNNER_USER with $tool"
    fi
  done
}

# The max-lifetime guard, independent of the idle watcher: shutdown -h +N from the
# deadline saved at the first boot, re-armed at every boot (the systemd timer is a
# second, persistent copy). A guard that cannot be armed means no runner.
arm_lifetime() {
  local deadline now
  deadline=$(<"$STATE_DIR/deadline")
  now=$(date +%s)
  if [ "$now" -ge "$deadline" ]; then
    fail_closed "max lifetime reached"
  fi
  # shutdown takes minutes: round up so the guard never fires early.
  if ! shutdown -h "+$(((deadline - now + 59) / 60))" "cml-nb: max lifetime reached"; then
    fail_closed "could not schedule the max-lifetime shutdown"
  fi
}

run_user_script() {
  if [ -n "$USER_SCRIPT_B64" ] && [ ! -e "$STATE_DIR/registered" ]; then
    log "running the user's startup script"
    printf '%s' "$USER_SCRIPT_B64" | base64 -d >/tmp/cml-nb-user-script.sh
    bash /tmp/cml-nb-user-script.sh
  fi
}

write_units() {
  local script="$STATE_DIR/startup.sh" when
  # Local time, without a zone suffix: systemd before 235 reads no zone in OnCalendar.
  when=$(date -d "@$1" '+%Y-%m-%d %H:%M:%S')
  mkdir -p "$SYSTEMD_DIR"
  # FailureAction: a guard service that dies (killed, crashed) powers the machine off.
  cat >"$SYSTEMD_DIR/cml-nb-runner.service" <<EOF
[Unit]
Description=cml-nb runner: metadata block, lifetime and idle guards, runner agent
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=/bin/bash $script --service
FailureAction=poweroff

[Install]
WantedBy=multi-user.target
EOF
  # Persistent: a deadline that passed while the machine was down fires at boot.
  cat >"$SYSTEMD_DIR/cml-nb-runner-lifetime.timer" <<EOF
[Unit]
Description=cml-nb runner: max lifetime

[Timer]
OnCalendar=$when
Persistent=true
AccuracySec=1s

[Install]
WantedBy=timers.target
EOF
  cat >"$SYSTEMD_DIR/cml-nb-runner-lifetime.service" <<EOF
[Unit]
Description=cml-nb runner: max lifetime reached

[Service]
Type=oneshot
ExecStart=/bin/bash $script --lifetime-ended
EOF
  chmod 644 "$SYSTEMD_DIR"/cml-nb-runner*
}

# cloud-init keeps root-only copies of the user-data; the secret must not outlive the
# first boot there (the metadata service keeps its own: see protect_metadata).
forget_user_data() {
  rm -f "$CLOUD_DIR"/instances/*/user-data.txt* "$CLOUD_DIR"/instances/*/scripts/part-* \
    "$CLOUD_DIR"/instance/user-data.txt* "$CLOUD_DIR"/instance/scripts/part-*
}

first_boot() {
  trap 'power_off "the first boot failed (see $LOG_FILE)"' ERR
  log "first boot of runner $RUNNER_NAME for $FORGE"
  local deadline=${EXPIRES_AT:-}
  if [ -z "$deadline" ]; then
    deadline=$(($(date +%s) + MAX_LIFETIME_SECONDS))
  fi
  mkdir -p "$STATE_DIR"
  chmod 700 "$STATE_DIR"
  printf '%s\n' "$deadline" >"$STATE_DIR/deadline"
  # The secret moves to a root-only file that the service removes once it has
  # registered; the service's own copy of this script has no secret.
  printf '%s' "$REGISTRATION" >"$STATE_DIR/registration"
  REGISTRATION=""
  sed "s/^REGISTRATION=.*/REGISTRATION=''/" "$(readlink -f "$0")" >"$STATE_DIR/startup.sh"
  write_units "$deadline"
  forget_user_data
  systemctl daemon-reload
  systemctl enable --now cml-nb-runner-lifetime.timer
  systemctl enable cml-nb-runner.service
  trap - ERR
  # --no-block: cloud-init waits for user-data to finish; the boot must complete.
  systemctl start --no-block cml-nb-runner.service
}

service() {
  trap 'power_off "the runner service failed (see $LOG_FILE)"' ERR
  log "starting runner $RUNNER_NAME for $FORGE"
  arm_lifetime
  check_gpu
  ensure_user
  protect_metadata
  install_cml_nb
  install_agent
  run_user_script
  start_agent
  trap - ERR
  watch_idle
}

main() {
  case "${1:-}" in
    --service) service ;;
    --lifetime-ended) power_off "max lifetime reached" ;;
    *) first_boot ;;
  esac
}

main "$@"
