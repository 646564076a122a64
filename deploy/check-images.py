"""Fails when a Kubernetes overlay names an image that no release can have pushed.

Renders every overlay under deploy/k8s/overlays with `kubectl kustomize` and checks each container image
(containers, initContainers and ephemeralContainers of any kind) against .github/workflows/release.yml:

  * Ours (a name under ghcr.io/llmserve/, or one that starts with `llmserve`) must be one of the two
    repositories release.yml pushes, ghcr.io/llmserve/$CPU_IMAGE and ghcr.io/llmserve/$CUDA_IMAGE, with a tag:
    - the CPU image's tag is VERSION, with no -smNN suffix;
    - the CUDA image's tag is VERSION-smNN, NN one of the cuda-image job's matrix (compute-cap);
    - VERSION is a semantic version no greater than Cargo.toml's: a release is tagged vVERSION and checks
      that the tag matches Cargo.toml, so a newer version has never been built.
  * Anyone else's image (Redis, an endpoint picker, ...) must be pinned: a digest, or a tag other than
    `latest`.

The namespace is the upstream owner's, `llmserve` (release.yml pushes under the repository owner, which is
`llmserve` upstream); LLMSERVE_IMAGE_OWNER changes it for a fork whose overlays name its own images.
Usage: PYTHON deploy/check-images.py [K8S_DIR]     (K8S_DIR: deploy/k8s; a copy holding base/ and overlays/)
Needs kubectl and PyYAML (the test venv's python has it). One line per violation; exit 1 if there is any.
"""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "check-images"
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
CUDA_SUFFIX = re.compile(r"^(?P<version>.+)-sm(?P<cap>\d+)$")


def fail_setup(message):
    print(f"{PREFIX}: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def semver_key(version):
    """A sort key with semantic-version precedence (a pre-release sorts before its release), or None."""
    m = SEMVER.match(version)
    if not m:
        return None
    core = tuple(int(x) for x in m.group(1, 2, 3))
    pre = m.group(4)
    if pre is None:
        return (core, 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (core, 0, ids)


def release_model(path):
    """What release.yml pushes: {repository name: kind}, the CUDA matrix, and the tag formats it uses."""
    try:
        workflow = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        fail_setup(f"cannot read {path}: {e}")
    env = workflow.get("env") or {}
    cpu, cuda = env.get("CPU_IMAGE"), env.get("CUDA_IMAGE")
    if not cpu or not cuda:
        fail_setup(f"{path} sets no CPU_IMAGE and CUDA_IMAGE in its top-level env")
    # The jobs must push exactly the tags modelled here; a change there must change this check too.
    formats = {
        "cpu": 'image="ghcr.io/${GITHUB_REPOSITORY_OWNER,,}/$CPU_IMAGE:$VERSION"',
        "cuda": 'image="ghcr.io/${GITHUB_REPOSITORY_OWNER,,}/$CUDA_IMAGE:$VERSION-sm$COMPUTE_CAP"',
    }
    found = {}
    for name, job in (workflow.get("jobs") or {}).items():
        runs = "\n".join(step.get("run", "") for step in job.get("steps") or [])
        for kind, line in formats.items():
            if line in runs and "push" in runs:
                found[kind] = (name, job, runs)
    for kind, line in formats.items():
        if kind not in found:
            fail_setup(f"no job in {path} pushes {line} (deploy/check-images.py models that tag)")
    name, job, runs = found["cuda"]
    caps = ((job.get("strategy") or {}).get("matrix") or {}).get("compute-cap")
    if not caps or not all(re.fullmatch(r"\d+", str(c)) for c in caps):
        fail_setup(f"{path}: job {name} has no matrix compute-cap of plain numbers ({caps!r})")
    if 'CUDA_COMPUTE_CAP="$COMPUTE_CAP"' not in runs:
        fail_setup(f"{path}: job {name} does not build with --build-arg CUDA_COMPUTE_CAP=\"$COMPUTE_CAP\"")
    return {cpu: "cpu", cuda: "cuda"}, sorted(str(c) for c in caps)


def split_image(ref):
    """(repository, tag or None, digest or None) of an image reference."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
    return ref, tag, digest


def images_in(node, where, out):
    """(where, image) for every container of every pod template in a rendered object."""
    if isinstance(node, dict):
        for key in ("containers", "initContainers", "ephemeralContainers"):
            containers = node.get(key)
            for c in containers if isinstance(containers, list) else []:
                if isinstance(c, dict) and "image" in c:
                    out.append((f"{where} {key[:-1]} {c.get('name', '?')}", c["image"]))
        for value in node.values():
            images_in(value, where, out)
    elif isinstance(node, list):
        for value in node:
            images_in(value, where, out)


def check_image(ref, owner, pushed, caps, cargo_version):
    """The violations of one image reference (an empty list when it is fine)."""
    repo, tag, digest = split_image(ref)
    ours_prefix = f"ghcr.io/{owner}/"
    ours = repo.startswith(ours_prefix) or repo.rsplit("/", 1)[-1].startswith("llmserve")
    if not ours:
        if digest:
            return []
        if tag is None:
            return [f"{ref} is not pinned: name a tag (not latest) or a digest"]
        if tag == "latest":
            return [f"{ref} is not pinned: `latest` moves; name a version tag or a digest"]
        return []
    names = " and ".join(f"{ours_prefix}{n}" for n in pushed)
    kind = pushed.get(repo[len(ours_prefix):]) if repo.startswith(ours_prefix) else None
    if kind is None:
        return [f"{ref}: release.yml pushes no {repo} (it pushes {names})"]
    if tag is None:
        return [f"{ref} has no tag: release.yml pushes {repo} only under version tags"]
    faults = []
    suffixed = CUDA_SUFFIX.match(tag)
    suffixes = ", ".join(f"-sm{c}" for c in caps)
    if kind == "cpu":
        if suffixed:
            return [f"{ref}: the CPU image carries no -smNN suffix (that is {ours_prefix}"
                    f"{next(n for n, k in pushed.items() if k == 'cuda')}'s); its tags are plain versions"]
        version = tag
    else:
        if not suffixed:
            return [f"{ref}: CUDA tags are VERSION-smNN, one per compute capability ({suffixes}); "
                    f"release.yml pushes no plain {tag}"]
        version, cap = suffixed.group("version"), suffixed.group("cap")
        if cap not in caps:
            faults.append(f"{ref}: release.yml builds no sm{cap} image (its matrix: {suffixes})")
    key = semver_key(version)
    if key is None:
        faults.append(f"{ref}: {version!r} is not a release version (releases are tagged vX.Y.Z from Cargo.toml)")
    elif key > semver_key(cargo_version):
        faults.append(f"{ref}: version {version} is newer than Cargo.toml's {cargo_version}, so no release "
                      f"has built it (a release builds Cargo.toml's version, tagged v{cargo_version})")
    return faults


def main():
    k8s = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "deploy" / "k8s"
    owner = os.environ.get("LLMSERVE_IMAGE_OWNER", "llmserve").lower()
    pushed, caps = release_model(ROOT / ".github" / "workflows" / "release.yml")
    try:
        cargo_version = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as e:
        fail_setup(f"cannot read Cargo.toml's package version: {e}")
    if semver_key(cargo_version) is None:
        fail_setup(f"Cargo.toml's version {cargo_version!r} is not a semantic version")
    overlays = sorted(p for p in (k8s / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
    if not overlays:
        fail_setup(f"no overlays under {k8s / 'overlays'}")
    violations = 0
    for overlay in overlays:
        rendered = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True)
        if rendered.returncode != 0:
            print(f"{PREFIX}: FAILED: overlay {overlay.name} does not render: {rendered.stderr.strip()}",
                  file=sys.stderr)
            violations += 1
            continue
        found = []
        for doc in yaml.safe_load_all(rendered.stdout):
            if isinstance(doc, dict):
                meta = doc.get("metadata") or {}
                images_in(doc, f"{doc.get('kind', '?')}/{meta.get('name', '?')}", found)
        faults = [f"{where}: {fault}" for where, ref in found
                  for fault in check_image(ref, owner, pushed, caps, cargo_version)]
        for fault in faults:
            print(f"{PREFIX}: FAILED: overlay {overlay.name}: {fault}", file=sys.stderr)
        violations += len(faults)
        if not faults:
            names = ", ".join(sorted({ref for _, ref in found})) or "no images"
            print(f"{PREFIX}: ok: overlay {overlay.name}: {names}")
    if violations:
        print(f"{PREFIX}: {violations} image reference(s) that release.yml does not produce or that are not "
              f"pinned (release pushes {', '.join(f'ghcr.io/{owner}/{n}' for n in pushed)}, CUDA tags "
              f"-sm{', -sm'.join(caps)}; Cargo.toml's version is {cargo_version})", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
