// Validates the custom resources of rendered manifests (Gateway API, Prometheus Operator) with the schemas
// of the npm `kubernetes-models` packages; kubernetes-validate knows only the core kinds.
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
};
// Kinds kubernetes-validate covers.
const core = new Set(["v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1"]);

let failed = false;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, "utf8"))) {
    if (!doc || core.has(doc.apiVersion)) continue;
    const key = `${doc.apiVersion}/${doc.kind}`;
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
