#!/bin/bash
# cml-nb runner startup script (cloud-init user-data), rendered by cml_nb.runner.script.
# It installs the forge's runner agent and cml-nb, checks the GPU driver, registers
# the runner, runs jobs, and shuts the machine down (which terminates it) when idle.
# Do not print this file: it holds a runner registration secret.
set -Eeuo pipefail
umask 077

# @CONFIG@

AGENT_PID=""

log() {
  printf '%s cml-nb-runner: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" | tee -a "$LOG_FILE" >&2
}

runner_home() {
  getent passwd "$RUNNER_USER" | cut -d: -f6
}

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

# A second guard, independent of the idle watcher: the machine goes down at the
# latest after MAX_LIFETIME minutes, whatever happens to this script.
schedule_max_lifetime() {
  shutdown -h "+${MAX_LIFETIME_MINUTES}" "cml-nb: max lifetime reached" || log "could not schedule the max-lifetime shutdown"
}

unregister() {
  if [ "$FORGE" = gitlab ] && command -v gitlab-runner >/dev/null 2>&1; then
    # Deletes the runner on GitLab with its own token, so nothing is left behind.
    gitlab-runner unregister --all-runners >/dev/null 2>&1 || true
  fi
}

power_off() {
  log "shutting down: $1"
  if [ -n "$AGENT_PID" ]; then
    kill -TERM "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
  fi
  unregister
  # The instance is launched with shutdown behaviour "terminate".
  shutdown -h now "cml-nb: $1"
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

start_agent() {
  local secret="$REGISTRATION"
  REGISTRATION=""
  if [ "$FORGE" = github ]; then
    cd "$RUNNER_DIR"
    if [ "$REGISTRATION_KIND" = jit ]; then
      exec_as_runner_user ./run.sh --jitconfig "$secret" &
    else
      local ephemeral=()
      if [ "$SINGLE" = 1 ]; then
        ephemeral=(--ephemeral)
      fi
      as_runner_user ./config.sh --unattended --replace --url "$FORGE_URL" --token "$secret" \
        --name "$RUNNER_NAME" --labels "$LABELS" --work _work "${ephemeral[@]}" >/dev/null
      exec_as_runner_user ./run.sh &
    fi
  else
    mkdir -p "$RUNNER_DIR"
    chown "$RUNNER_USER" "$RUNNER_DIR"
    gitlab-runner register --non-interactive --url "$FORGE_URL" --token "$secret" \
      --executor shell --name "$RUNNER_NAME" >/dev/null
    gitlab-runner run --user "$RUNNER_USER" --working-directory "$RUNNER_DIR" \
      --listen-address "127.0.0.1:${METRICS_PORT}" &
  fi
  AGENT_PID=$!
  secret=""
  log "runner agent started as $RUNNER_NAME (labels: $LABELS)"
}

# Whether the agent is running a job right now.
runner_busy() {
  if [ "$FORGE" = github ]; then
    # The listener starts one Runner.Worker process per job.
    pgrep -f 'Runner\.Worker' >/dev/null 2>&1
  else
    curl -fsS "http://127.0.0.1:${METRICS_PORT}/metrics" 2>/dev/null |
      awk '/^gitlab_runner_jobs[{ ]/ { jobs += $NF } END { exit !(jobs > 0) }'
  fi
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
        power_off "idle for ${IDLE_TIMEOUT_SECONDS}s"
        return 0
      fi
    fi
    sleep "$POLL_SECONDS"
  done
}

# The user-data (with the registration secret) is readable from the instance metadata
# service: jobs, which run as RUNNER_USER, must not reach it.
protect_metadata() {
  if [ "$(id -u "$RUNNER_USER")" = 0 ]; then
    log "jobs run as root: they can read the instance metadata, registration secret included"
    return 0
  fi
  if ! iptables -I OUTPUT -d 169.254.169.254 -m owner --uid-owner "$RUNNER_USER" -j REJECT; then
    log "could not block the instance metadata service for $RUNNER_USER"
  fi
  if ! ip6tables -I OUTPUT -d fd00:ec2::254 -m owner --uid-owner "$RUNNER_USER" -j REJECT; then
    log "could not block the IPv6 instance metadata service for $RUNNER_USER"
  fi
}

run_user_script() {
  if [ -n "$USER_SCRIPT_B64" ]; then
    log "running the user's startup script"
    printf '%s' "$USER_SCRIPT_B64" | base64 -d >/tmp/cml-nb-user-script.sh
    bash /tmp/cml-nb-user-script.sh
  fi
}

main() {
  # cloud-init waits for user-data to finish: go on as a systemd unit instead, so the
  # boot completes and the runner's log lands in the journal too.
  if [ -z "${CML_NB_FOREGROUND:-}" ] && [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
    exec systemd-run --unit=cml-nb-runner --collect --setenv=CML_NB_FOREGROUND=1 \
      /bin/bash "$(readlink -f "$0")"
  fi
  log "starting runner $RUNNER_NAME for $FORGE"
  schedule_max_lifetime
  trap 'power_off "the startup script failed (see $LOG_FILE)"' ERR
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

main "$@"
