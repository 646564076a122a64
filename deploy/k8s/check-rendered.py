"""Checks one rendered overlay (`kubectl kustomize` output) for what schemas cannot see: how its objects fit
together, and the InferencePool against its published schema.

  * A Deployment that an HPA or a KEDA ScaledObject scales sets no `replicas` (every apply would reset the
    autoscaler's count), and no Deployment's selector matches another Deployment's pods.
  * A ScaledObject's PromQL names the namespace the overlay deploys into.
  * Every llmserve container that reads a models file (LLMSERVE_CONFIG) mounts it from a ConfigMap of the
    render as a directory (a subPath mount never sees an edit, so llmserve's reload would not either); the file
    is valid TOML; every `key_env` it names is set in the container; all models files of the overlay declare
    the same [[keys]]; an env value's $(VAR) refers to a variable defined before it.
  * No NetworkPolicy admits traffic to the llmserve pods from everywhere or on every port.
  * InferencePool (inference.networking.k8s.io/v1) against the openAPIV3Schema vendored from the Gateway API
    Inference Extension v1.6.0 (schemas/inferencepool-v1.6.0.yaml), with unknown fields refused as
    `kubectl apply --validate=strict` would; the schema's two CEL rules are checked by hand. Its selector,
    target port and endpoint picker must exist in the render.
  * The endpoint picker's EndpointPickerConfig (llm-d-router v0.10.0; a file in a ConfigMap, not a Kubernetes
    object): its plugin references resolve, it scrapes the pods' metrics port, and it reads metric names that
    src/metrics/mod.rs registers.
  * With --metrics FILE (a running llmserve's /metrics), each picker gauge it reads is there, one unlabelled
    series.

Usage: PYTHON deploy/k8s/check-rendered.py RENDERED.yaml [--metrics METRICS.txt]   (the test venv's python:
PyYAML and jsonschema). Prints one line per fault and exits 1 if there is any.
"""

import copy
import posixpath
import re
import sys
import tomllib
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
POOL_SCHEMA = HERE / "schemas" / "inferencepool-v1.6.0.yaml"
# The names the picker config may read: the ones llmserve's metrics registry creates.
METRICS_SOURCE = ROOT / "src" / "metrics" / "mod.rs"
faults = []


def fault(message):
    faults.append(message)


def name_of(doc):
    return f"{doc['kind']}/{doc['metadata']['name']}"


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def pod_spec(doc):
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def check_scaling(docs, deployments):
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in docs
              if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")}
    for d in deployments:
        if d["metadata"]["name"] in scaled and "replicas" in d["spec"]:
            fault(f"{name_of(d)} sets replicas, but an autoscaler scales it (every apply would reset its count)")
        wanted = d["spec"]["selector"]["matchLabels"]
        for other in deployments:
            if other is not d and matches(wanted, other["spec"]["template"]["metadata"].get("labels", {})):
                fault(f"{name_of(d)}'s selector matches {name_of(other)}'s pods")
    for so in (d for d in docs if d["kind"] == "ScaledObject"):
        namespace = so["metadata"].get("namespace")
        for trigger in so["spec"].get("triggers", []):
            query = (trigger.get("metadata") or {}).get("query", "")
            named = re.findall(r'namespace="([^"]*)"', query)
            if trigger.get("type") == "prometheus" and named != [namespace]:
                fault(f"{name_of(so)}: its query names namespace {named or 'none'}, but it deploys into "
                      f"{namespace!r}: it would scale on another namespace's pods, or on none")


def check_models_files(docs, deployments):
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    keys_seen = {}
    for d in deployments:
        spec = pod_spec(d)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            env = c.get("env", [])
            defined = set()
            for e in env:
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", "")):
                    if ref not in defined:
                        fault(f"{name_of(d)} container {c['name']}: {e['name']} refers to $({ref}) before it is "
                              f"defined (the kubelet expands only earlier variables)")
                defined.add(e["name"])
            config = next((e.get("value") for e in env if e["name"] == "LLMSERVE_CONFIG"), None)
            if config is None:
                continue
            directory, file = posixpath.split(config)
            mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == directory), None)
            if mount is None:
                fault(f"{name_of(d)}: LLMSERVE_CONFIG={config}, but no volume is mounted at {directory}")
                continue
            if mount.get("subPath"):
                fault(f"{name_of(d)}: the models file is mounted with subPath, which never sees a ConfigMap edit")
            volume = volumes.get(mount["name"], {})
            cm_name = (volume.get("configMap") or {}).get("name")
            cm = configmaps.get(cm_name)
            if cm is None or file not in cm.get("data", {}):
                fault(f"{name_of(d)}: {config} is not a key of a ConfigMap in the render (volume {mount['name']})")
                continue
            try:
                models = tomllib.loads(cm["data"][file])
            except tomllib.TOMLDecodeError as e:
                fault(f"ConfigMap/{cm_name}: {file} is not valid TOML: {e}")
                continue
            keys_seen[cm_name] = models.get("keys", [])
            for key in models.get("keys", []):
                var = key.get("key_env")
                if var and var not in defined:
                    fault(f"{name_of(d)}: the models file's key `{key.get('id')}` reads ${var}, which the "
                          f"container does not set (llmserve refuses a file whose key_env is unset)")
    if len({repr(k) for k in keys_seen.values()}) > 1:
        fault(f"the models files {sorted(keys_seen)} declare different [[keys]]: a client's key would work on "
              f"one track and not the other")


def check_network_policies(docs, deployments):
    llmserve_labels = [d["spec"]["template"]["metadata"].get("labels", {}) for d in deployments
                       if d["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/name")
                       == "llmserve"]
    for np in (d for d in docs if d["kind"] == "NetworkPolicy"):
        selector = np["spec"]["podSelector"].get("matchLabels", {})
        if not any(matches(selector, labels) for labels in llmserve_labels):
            continue
        for rule in np["spec"].get("ingress", []):
            if not rule.get("from") or not rule.get("ports"):
                fault(f"{name_of(np)}: an ingress rule without `from` or `ports` opens every port of the llmserve "
                      f"pods (metrics, admin) to more than the gateway and the scrapers")


def strict(schema):
    """The schema with unknown fields refused where it lists properties (structural schemas prune them; the
    API server's strict field validation, which `kubectl apply` asks for, refuses them)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def check_inference_pools(docs, deployments):
    pools = [d for d in docs if d["kind"] == "InferencePool"]
    if not pools:
        return []
    schema = strict(yaml.safe_load(POOL_SCHEMA.read_text())["openAPIV3Schema"])
    validator = jsonschema.Draft7Validator(schema)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for pool in pools:
        where = f"{name_of(pool)} (InferencePool v1 schema, Gateway API Inference Extension v1.6.0)"
        for error in sorted(validator.iter_errors(pool), key=lambda e: list(e.path)):
            fault(f"{where}: {'/'.join(map(str, error.path)) or '.'}: {error.message}")
        spec = pool.get("spec", {})
        numbers = [p.get("number") for p in spec.get("targetPorts", [])]
        if len(numbers) != len(set(numbers)):
            fault(f"{where}: port number must be unique")
        ref = spec.get("endpointPickerRef") or {}
        if ref and ref.get("kind", "Service") == "Service" and "port" not in ref:
            fault(f"{where}: port is required when kind is 'Service' or unspecified")
        members = [d for d in deployments
                   if matches(spec.get("selector", {}).get("matchLabels"), d["spec"]["template"]["metadata"]
                              .get("labels", {}))]
        if not members:
            fault(f"{name_of(pool)}: its selector matches no Deployment's pods")
        for d in members:
            ports = {p["containerPort"] for c in pod_spec(d)["containers"] for p in c.get("ports", [])}
            for number in numbers:
                if number not in ports:
                    fault(f"{name_of(pool)}: target port {number} is not a container port of {name_of(d)}")
        if ref:
            service = services.get(ref.get("name"))
            if service is None:
                fault(f"{name_of(pool)}: its endpoint picker Service {ref.get('name')} is not in the render")
            elif ref.get("port", {}).get("number") not in [p["port"] for p in service["spec"]["ports"]]:
                fault(f"{name_of(pool)}: Service/{service['metadata']['name']} has no port "
                      f"{ref.get('port', {}).get('number')}")
            else:
                pickers = [d for d in deployments if matches(service["spec"]["selector"],
                                                             d["spec"]["template"]["metadata"].get("labels", {}))]
                flag = f"--pool-name={pool['metadata']['name']}"
                if not any(flag in c.get("args", []) for d in pickers for c in pod_spec(d)["containers"]):
                    fault(f"{name_of(pool)}: no picker behind Service/{service['metadata']['name']} runs with {flag}")
    return [d for pool in pools for d in deployments
            if matches(pool["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"].get("labels", {}))]


def check_picker_configs(docs, members, metrics_text):
    registered = set(re.findall(r'"(llmserve_[a-z_]+)"', METRICS_SOURCE.read_text()))
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        for file, text in (cm.get("data") or {}).items():
            if "kind: EndpointPickerConfig" not in text:
                continue
            where = f"{name_of(cm)} {file}"
            config = yaml.safe_load(text)
            if config.get("apiVersion") != "llm-d.ai/v1alpha1":
                fault(f"{where}: apiVersion {config.get('apiVersion')!r}, not llm-d.ai/v1alpha1 (llm-d-router v0.10.0)")
            plugins = {p.get("name") or p["type"]: p for p in config.get("plugins", [])}
            refs = [s["pluginRef"] for s in (config.get("dataLayer") or {}).get("sources", [])]
            refs += [e["pluginRef"] for s in (config.get("dataLayer") or {}).get("sources", [])
                     for e in s.get("extractors", [])]
            refs += [p["pluginRef"] for profile in config.get("schedulingProfiles", []) for p in profile["plugins"]]
            for ref in refs:
                if ref not in plugins:
                    fault(f"{where}: pluginRef {ref} names no plugin")
            source = next((p for p in plugins.values() if p["type"] == "metrics-data-source"), None)
            port = ((source or {}).get("parameters") or {}).get("port")
            for d in members:
                for c in pod_spec(d)["containers"]:
                    metrics_ports = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == "metrics"]
                    if metrics_ports and port not in metrics_ports:
                        fault(f"{where}: the picker scrapes port {port}, but {name_of(d)} serves /metrics on "
                              f"{metrics_ports}")
            extractor = next((p for p in plugins.values() if p["type"] == "core-metrics-extractor"), None)
            params = (extractor or {}).get("parameters") or {}
            engines = {e["name"]: e for e in params.get("engineConfigs", [])}
            engine = engines.get(params.get("defaultEngine"))
            if engine is None:
                fault(f"{where}: defaultEngine {params.get('defaultEngine')!r} has no engineConfigs entry (the picker "
                      f"would read vLLM's vllm: names, which llmserve does not export)")
                continue
            for field in ("queuedRequestsSpec", "runningRequestsSpec", "kvUsageSpec", "cacheInfoSpec"):
                metric = engine.get(field, "").split("{")[0]
                if metric not in registered:
                    fault(f"{where}: {field} {metric!r} is not a metric src/metrics/mod.rs registers")
                if metrics_text is not None and field != "cacheInfoSpec":
                    # cache_config_info is absent without paged attention (CPU builds): only the gauges.
                    samples = [line for line in metrics_text.splitlines()
                               if re.match(rf"{re.escape(metric)}[ {{]", line)]
                    if len(samples) != 1 or "{" in samples[0]:
                        fault(f"{where}: the running llmserve serves {metric} as {samples or 'nothing'}; the "
                              f"picker needs one unlabelled series per pod")


def main():
    args = sys.argv[1:]
    metrics_text = None
    if "--metrics" in args:
        i = args.index("--metrics")
        metrics_text = Path(args[i + 1]).read_text()
        del args[i:i + 2]
    docs = [d for d in yaml.safe_load_all(Path(args[0]).read_text()) if d]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    check_scaling(docs, deployments)
    check_models_files(docs, deployments)
    check_network_policies(docs, deployments)
    members = check_inference_pools(docs, deployments)
    check_picker_configs(docs, members, metrics_text)
    for message in faults:
        print(message, file=sys.stderr)
    sys.exit(1 if faults else 0)


if __name__ == "__main__":
    main()
