#!/usr/bin/env bash
# Writes prometheusrule.yaml from deploy/observability/alerts.yml: a PrometheusRule's spec is a rules file's
# `groups`. deploy/k8s/validate.sh fails when the committed file is stale.
# Usage: deploy/k8s/components/monitoring/build-prometheusrule.sh [OUT]   (default: prometheusrule.yaml here)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/prometheusrule.yaml}"
{
  echo "# Generated from deploy/observability/alerts.yml by build-prometheusrule.sh: edit those rules, not this."
  echo "apiVersion: monitoring.coreos.com/v1"
  echo "kind: PrometheusRule"
  echo "metadata:"
  echo "  name: llmserve"
  echo "spec:"
  grep -v '^#' "$here/../../../observability/alerts.yml" | sed 's/^/  /; s/^ *$//'
} > "$out"
