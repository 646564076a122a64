// Validates the custom resources of rendered manifests with the schemas of the npm `kubernetes-models`
// packages (tests/node/package.json), each generated from its project's API types at a named release:
// @kubernetes-models/gateway-api 2.0.0 (Gateway API v1.5.1: HTTPRoute), @kubernetes-models/prometheus-operator
// 6.0.0 (prometheus-operator v0.91.0: ServiceMonitor, PrometheusRule), @kubernetes-models/keda 2.0.0 (KEDA
// v2.19.0: ScaledObject). kubernetes-validate knows only the core kinds; the InferencePool, which no
// registry package models, is checked by check-rendered.py against its vendored CRD schema.
// Usage: NODE_MODULES=DIR node deploy/k8s/validate-crds.mjs RENDERED.yaml...
// (DIR holds @kubernetes-models/* and js-yaml: scripts/node-env.sh installs them from tests/node/package.json.)
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const modules = process.env.NODE_MODULES;
if (!modules) {
  console.error("k8s: set NODE_MODULES to the node_modules holding @kubernetes-models/* and js-yaml");
  process.exit(2);
}
const yaml = createRequire(path.join(modules, "noop.js"))("js-yaml");
// The packages are ESM with an exports map: their files are imported by path.
const model = async (file, name) =>
  (await import(pathToFileURL(path.join(modules, "@kubernetes-models", file)).href))[name];

const kinds = {
  "gateway.networking.k8s.io/v1/HTTPRoute": ["gateway-api/gateway.networking.k8s.io/v1/HTTPRoute.js", "HTTPRoute"],
  "monitoring.coreos.com/v1/ServiceMonitor": ["prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js", "ServiceMonitor"],
  "monitoring.coreos.com/v1/PrometheusRule": ["prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js", "PrometheusRule"],
  "keda.sh/v1alpha1/ScaledObject": ["keda/keda.sh/v1alpha1/ScaledObject.js", "ScaledObject"],
};
// Kinds kubernetes-validate covers.
const core = new Set([
  "v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1",
]);
// Kinds checked elsewhere (check-rendered.py).
const elsewhere = new Set(["inference.networking.k8s.io/v1/InferencePool"]);

let failed = false;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, "utf8"))) {
    if (!doc || core.has(doc.apiVersion)) continue;
    const key = `${doc.apiVersion}/${doc.kind}`;
    if (elsewhere.has(key)) continue;
    const where = `${path.basename(file)}: ${doc.kind}/${doc.metadata?.name}`;
    if (!kinds[key]) {
      console.error(`k8s: FAILED: ${where}: no validator for ${key}`);
      failed = true;
      continue;
    }
    try {
      const Kind = await model(...kinds[key]);
      new Kind(doc).validate();
      console.log(`k8s: ok: ${where} validates`);
    } catch (error) {
      console.error(`k8s: FAILED: ${where}: ${error.message}`);
      failed = true;
    }
  }
}
process.exit(failed ? 1 : 0);
