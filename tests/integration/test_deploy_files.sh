#!/usr/bin/env bash
# test_deploy_files.sh BIN: check deploy/ offline, since no container engine
# or cluster runs here.
#   - every YAML file parses (python3-yaml), and the compose file and the
#     Kubernetes manifests agree with each other (names, selectors, ports,
#     secret keys, probe paths, KEDA target and group, alert rules identical
#     in both forms);
#   - the worker config in the ConfigMap and the compose environment are
#     accepted by the real binary (`unlearnd worker --dump-config`), the pod
#     name becomes kafka.group.instance.id, and the Redis password is masked;
#   - /metrics binds loopback by default, and every deployment (ConfigMap,
#     compose environment, the image's ENV) sets metrics.bind=0.0.0.0;
#   - the Dockerfile copies existing sources and its runtime packages cover
#     the binary's shared libraries (readelf + dpkg);
#   - when installed: promtool checks and unit-tests the alert rules, and
#     docker-compose (v1) or `docker compose` renders the compose file.
# Prints what ran and what was skipped. Exit 77 when python3-yaml is absent.
set -euo pipefail
BIN="$(realpath "${1:?usage: test_deploy_files.sh path/to/unlearnd}")"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEPLOY="$ROOT/deploy"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

python3 -c 'import yaml' 2>/dev/null || { echo "SKIP: python3-yaml not installed"; exit 77; }

# ---- structure (python) ------------------------------------------------------
python3 - "$DEPLOY" "$TMP" <<'PY'
import glob, os, re, sys, yaml

deploy, tmp = sys.argv[1], sys.argv[2]
fails = []
def check(cond, msg):
    if not cond:
        fails.append(msg)

docs = {}
for path in sorted(glob.glob(os.path.join(deploy, "**", "*.y*ml"), recursive=True)):
    with open(path) as f:
        loaded = [d for d in yaml.safe_load_all(f) if d is not None]
    check(loaded, f"{path}: empty")
    docs[os.path.relpath(path, deploy)] = loaded
print(f"parsed {len(docs)} YAML files: {', '.join(sorted(docs))}")

# -- compose
compose = docs["docker-compose.yml"][0]
svc = compose["services"]
kafka = svc["kafka"]
check(kafka["image"].startswith("apache/kafka:"), "compose: kafka image is not apache/kafka")
env = kafka["environment"]
check("controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"],
      "compose: kafka is not a combined KRaft broker+controller")
check(not any("zookeeper" in s for s in svc), "compose: a ZooKeeper service")
check(re.fullmatch(r"[A-Za-z0-9_-]{22}", str(env["CLUSTER_ID"])) is not None,
      "compose: CLUSTER_ID is not a base64url UUID")
redis_cmd = " ".join(str(x) for x in svc["redis"]["command"])
check("--appendonly yes" in redis_cmd, "compose: redis without AOF")
check("--requirepass" in redis_cmd, "compose: redis without a password")
script = svc["topics"]["command"][0]
for topic in ["ratings", "forget-requests", "factors", "forget-receipts", "dead-letter",
              "item-updates"]:
    check(re.search(rf"create {re.escape(topic)} ", script), f"compose: topic {topic} not created")
check(re.search(r"create factors [^\n]*cleanup\.policy=compact", script),
      "compose: factors is not compacted")
parts = re.findall(r"create (ratings|forget-requests|item-updates) --partitions (\S+)", script)
check(len(parts) == 3 and len(set(p[1] for p in parts)) == 1,
      "compose: ratings, forget-requests and item-updates must have the same partition count")
worker = svc["worker"]
check(worker["build"]["dockerfile"] == "deploy/Dockerfile", "compose: worker not built from deploy/Dockerfile")
check(os.path.exists(os.path.join(deploy, "Dockerfile")), "deploy/Dockerfile missing")
check("replicas" in worker.get("deploy", {}), "compose: worker has no deploy.replicas")
check(worker["depends_on"]["topics"]["condition"] == "service_completed_successfully",
      "compose: worker does not wait for the topics")
check(str(worker["environment"].get("UNLEARND_METRICS_BIND")) == "0.0.0.0",
      "compose: worker does not set UNLEARND_METRICS_BIND=0.0.0.0 (the default is loopback)")
with open(os.path.join(tmp, "compose.env"), "w") as f:
    for k, v in worker["environment"].items():
        v = str(v)
        f.write(f"{k}={v}\n")
prom_vols = [v.split(":")[0] for v in svc["prometheus"]["volumes"]]
for v in prom_vols:
    check(os.path.exists(os.path.join(deploy, v)), f"compose: prometheus mounts missing {v}")

# -- kubernetes
k8s = {}
for name, ds in docs.items():
    if name.startswith("k8s/") and name != "k8s/kustomization.yaml":
        for d in ds:
            for key in ("apiVersion", "kind", "metadata"):
                check(key in d, f"{name}: no {key}")
            k8s[d["kind"]] = d
kust = docs["k8s/kustomization.yaml"][0]
listed = set(kust["resources"])
present = {os.path.basename(n) for n in docs if n.startswith("k8s/")} - {"kustomization.yaml"}
check(listed == present, f"kustomization resources {sorted(listed)} != files {sorted(present)}")
for kind in ["ConfigMap", "Secret", "Service", "StatefulSet", "PodDisruptionBudget",
             "ScaledObject", "PrometheusRule", "PodMonitor"]:
    check(kind in k8s, f"k8s: no {kind}")

sts = k8s["StatefulSet"]
tmpl = sts["spec"]["template"]
pod_labels = tmpl["metadata"]["labels"]
def selects(sel):
    return all(pod_labels.get(k) == v for k, v in sel.items())
check(selects(sts["spec"]["selector"]["matchLabels"]), "StatefulSet selector misses its pods")
check(selects(k8s["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]), "PDB selects no worker")
check(selects(k8s["Service"]["spec"]["selector"]), "Service selects no worker")
check(selects(k8s["PodMonitor"]["spec"]["selector"]["matchLabels"]), "PodMonitor selects no worker")
check(sts["spec"]["serviceName"] == k8s["Service"]["metadata"]["name"], "serviceName != Service")
c = tmpl["spec"]["containers"][0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
check(k8s["Service"]["spec"]["ports"][0]["targetPort"] in ports, "Service targetPort unknown")
check(k8s["PodMonitor"]["spec"]["podMetricsEndpoints"][0]["port"] in ports, "PodMonitor port unknown")
for probe, path in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz"), ("startupProbe", "/livez")]:
    check(c[probe]["httpGet"]["path"] == path, f"{probe} is not on {path}")
    check(c[probe]["httpGet"]["port"] in ports, f"{probe} port unknown")
envs = {e["name"]: e for e in c["env"]}
check(envs["UNLEARND_KAFKA_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name",
      "group.instance.id is not the pod name")
ref = envs["UNLEARND_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
secret = k8s["Secret"]
check(ref["name"] == secret["metadata"]["name"], "password secretKeyRef names another Secret")
check(ref["key"] in secret.get("stringData", {}) or ref["key"] in secret.get("data", {}),
      "password key missing from the Secret")
vol = {v["name"]: v for v in tmpl["spec"]["volumes"]}
mount = c["volumeMounts"][0]
check(vol[mount["name"]]["configMap"]["name"] == k8s["ConfigMap"]["metadata"]["name"],
      "config volume names another ConfigMap")
conf_path = os.path.join(mount["mountPath"], "worker.conf")
check(c["args"][c["args"].index("--config") + 1] == conf_path, "--config does not point at the ConfigMap file")
conf_text = k8s["ConfigMap"]["data"]["worker.conf"]
with open(os.path.join(tmp, "worker.conf"), "w") as f:
    f.write(conf_text)
conf = dict(l.split("=", 1) for l in conf_text.splitlines() if l.strip() and not l.lstrip().startswith("#"))
check(ports["metrics"] == int(conf["metrics.port"]), "metrics port differs from metrics.port")
# the worker binds loopback by default: a pod must bind every interface for
# its probes and scraper
check(conf.get("metrics.bind") == "0.0.0.0", "ConfigMap does not set metrics.bind=0.0.0.0")
check("redis.password" not in conf, "a password in the ConfigMap")

so = k8s["ScaledObject"]
check(so["spec"]["scaleTargetRef"]["kind"] == "StatefulSet" and
      so["spec"]["scaleTargetRef"]["name"] == sts["metadata"]["name"], "KEDA scales something else")
# One kafka trigger per input topic (the worker commits both for lag tools).
trigs = so["spec"]["triggers"]
check(sorted(t["metadata"].get("topic", "") for t in trigs) ==
      sorted([conf["topic.ratings"], conf["topic.forget_requests"]]),
      "KEDA triggers do not cover exactly topic.ratings and topic.forget_requests")
for trig in trigs:
    check(trig["type"] == "kafka", "KEDA trigger is not kafka")
    check(trig["metadata"]["consumerGroup"] == conf["kafka.group.id"], "KEDA group != kafka.group.id")
    check(trig["metadata"]["bootstrapServers"] == conf["kafka.bootstrap.servers"], "KEDA brokers differ")
    check(int(trig["metadata"]["lagThreshold"]) > 0, "KEDA lagThreshold not positive")
check(so["spec"]["minReplicaCount"] >= 1, "KEDA may scale to zero (forget requests unserved)")
check(so["spec"]["maxReplicaCount"] >= so["spec"]["minReplicaCount"], "KEDA max < min")

rules = docs["prometheus/alerts.yml"][0]
check(k8s["PrometheusRule"]["spec"] == rules, "PrometheusRule differs from prometheus/alerts.yml")
alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
for a in ["UnlearndConsumerLagGrowing", "UnlearndForgetRequestsDeadLettered", "UnlearndCheckpointStale"]:
    check(a in alerts, f"alert {a} missing")

# -- Dockerfile
docker = open(os.path.join(deploy, "Dockerfile")).read()
root = os.path.dirname(deploy)
for src in re.findall(r"^COPY (?!--from)(\S+)", docker, re.M):
    check(os.path.exists(os.path.join(root, src)), f"Dockerfile copies missing {src}")
check(re.search(r"^FROM debian:12", docker, re.M) is not None, "Dockerfile base is not Debian 12")
check(re.search(r"^ENV UNLEARND_METRICS_BIND=0\.0\.0\.0$", docker.split("\nFROM ")[-1], re.M),
      "Dockerfile runtime stage does not set UNLEARND_METRICS_BIND=0.0.0.0")
stages = docker.split("\nFROM ")
runtime = stages[-1]
pkgs = re.findall(r"^\s+([a-z0-9][a-z0-9.+-]+(?:\s+[a-z0-9][a-z0-9.+-]+)*)\s*\\?$", runtime, re.M)
names = sorted({w for line in pkgs for w in line.split() if not w.startswith("-")})
with open(os.path.join(tmp, "runtime-packages"), "w") as f:
    f.write("\n".join(names) + "\n")
print(f"Dockerfile runtime packages: {' '.join(names)}")

if fails:
    print("FAIL:\n  " + "\n  ".join(fails))
    sys.exit(1)
print("structure: all checks passed")
PY

# ---- the real binary accepts the configs ---------------------------------------
if "$BIN" worker --help >/dev/null 2>&1; then
    out="$TMP/dump.txt"
    env -i PATH="$PATH" UNLEARND_KAFKA_GROUP_INSTANCE_ID=unlearnd-worker-0 \
        UNLEARND_REDIS_PASSWORD=s3cret-value \
        "$BIN" worker --config "$TMP/worker.conf" --dump-config >"$out" 2>"$TMP/err" ||
        { echo "FAIL: the ConfigMap's worker.conf is refused:"; cat "$TMP/err"; exit 1; }
    grep -qx 'kafka.group.instance.id=unlearnd-worker-0' "$out" ||
        { echo "FAIL: pod name did not become kafka.group.instance.id"; exit 1; }
    if grep -q 's3cret-value' "$out"; then echo "FAIL: password printed by --dump-config"; exit 1; fi
    grep -qx 'redis.password=\*\*\*\*\*\*\*\*' "$out" || { echo "FAIL: password not masked"; exit 1; }
    grep -qx 'metrics.bind=0.0.0.0' "$out" || { echo "FAIL: ConfigMap metrics.bind not applied"; exit 1; }
    env -i PATH="$PATH" "$BIN" worker --dump-config >"$out" 2>"$TMP/err" ||
        { echo "FAIL: --dump-config without configuration:"; cat "$TMP/err"; exit 1; }
    grep -qx 'metrics.bind=127.0.0.1' "$out" ||
        { echo "FAIL: the default metrics.bind is not loopback: $(grep '^metrics.bind=' "$out")"; exit 1; }
    mapfile -t compose_env <"$TMP/compose.env"
    env -i PATH="$PATH" "${compose_env[@]}" "$BIN" worker --dump-config >"$out" 2>"$TMP/err" ||
        { echo "FAIL: the compose worker environment is refused:"; cat "$TMP/err"; exit 1; }
    grep -qx 'kafka.bootstrap.servers=kafka:9092' "$out" || { echo "FAIL: compose env not applied"; exit 1; }
    grep -qx 'metrics.bind=0.0.0.0' "$out" || { echo "FAIL: compose metrics.bind not applied"; exit 1; }
    echo "config: ConfigMap worker.conf and compose environment accepted by '$(basename "$BIN") worker --dump-config'"
else
    echo "SKIPPED config check: this binary has no 'worker' command yet"
fi

# ---- the Dockerfile's COPY list is enough to configure the build ----------------
# (configure only, with the Dockerfile's flags: a few seconds; docs/operations.md
# shows the full build replay)
if command -v cmake >/dev/null; then
    mkdir -p "$TMP/src"
    while read -r src; do
        cp -r "$ROOT/$src" "$TMP/src/"
    done < <(awk '/^COPY / && !/--from/ { print $2 }' "$DEPLOY/Dockerfile")
    flags=$(grep -o -- '-DCMAKE_BUILD_TYPE=[^ ]* -DUNLEARND_NATIVE=OFF -DUNLEARND_TESTS=OFF' \
        "$DEPLOY/Dockerfile")
    [ -n "$flags" ] || { echo "FAIL: Dockerfile cmake flags not found"; exit 1; }
    # shellcheck disable=SC2086
    cmake -S "$TMP/src" -B "$TMP/src/build" $flags >"$TMP/cmake.log" 2>&1 ||
        { echo "FAIL: the Dockerfile's sources do not configure:"; tail -20 "$TMP/cmake.log"; exit 1; }
    echo "dockerfile: its COPY list configures with its cmake flags"
else
    echo "SKIPPED Dockerfile configure check: cmake missing"
fi

# ---- runtime packages cover the binary's libraries ------------------------------
if command -v readelf >/dev/null && command -v dpkg >/dev/null; then
    missing=()
    while read -r lib; do
                # (awk reads to the end: an early exit would SIGPIPE ldconfig under pipefail)
        path="$(ldconfig -p | awk -v l="$lib" '$1 == l && !found { print $NF; found = 1 }')"
        [ -n "$path" ] || { missing+=("$lib(unresolved)"); continue; }
        real="$(readlink -f "$path")"
        pkg="$(dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || true)"
        pkg="${pkg%%:*}"
        case "$pkg" in
            libc6|libgcc-s1|libasan*|libubsan*) continue ;; # base image / sanitizer build only
        esac
        grep -qx "$pkg" "$TMP/runtime-packages" || missing+=("$lib($pkg)")
    done < <(readelf -d "$BIN" | awk '/NEEDED/ { gsub(/[][]/, "", $5); print $5 }')
    if [ ${#missing[@]} -gt 0 ]; then
        echo "FAIL: Dockerfile runtime stage lacks packages for: ${missing[*]}"
        exit 1
    fi
    echo "runtime: every NEEDED library of the binary comes from a package the Dockerfile installs"
else
    echo "SKIPPED runtime library check: readelf or dpkg missing"
fi

# ---- Kubernetes API schemas (npm packages kubernetes-models, keda, prometheus-operator)
SCHEMA="$ROOT/tests/integration/k8s-schema"
if command -v node >/dev/null && command -v npm >/dev/null; then
    if [ ! -d "$SCHEMA/node_modules/kubernetes-models" ]; then
        (cd "$SCHEMA" && timeout 180 npm install --no-package-lock --no-audit --no-fund \
            --loglevel=error) >"$TMP/npm.log" 2>&1 || true
    fi
    if [ -d "$SCHEMA/node_modules/kubernetes-models" ]; then
        node "$SCHEMA/check.mjs" "$DEPLOY"/k8s/*.yaml >"$TMP/schema.log" 2>&1 ||
            { cat "$TMP/schema.log"; echo "FAIL: a manifest does not match its API schema"; exit 1; }
        # The validator must reject a broken object, or its passes mean nothing.
        sed 's/replicas: 2/replicas: two/' "$DEPLOY/k8s/statefulset.yaml" >"$TMP/broken.yaml"
        if node "$SCHEMA/check.mjs" "$TMP/broken.yaml" >/dev/null 2>&1; then
            echo "FAIL: the schema check accepted replicas: two"
            exit 1
        fi
        echo "k8s schemas: $(grep -c ': valid$' "$TMP/schema.log") objects valid (kubernetes-models, keda, prometheus-operator)"
    else
        echo "SKIPPED k8s schema check: npm install in $SCHEMA failed: $(tail -1 "$TMP/npm.log")"
    fi
else
    echo "SKIPPED k8s schema check: node or npm not installed"
fi

# ---- optional tools -------------------------------------------------------------
if command -v promtool >/dev/null; then
    cp "$DEPLOY/prometheus/alerts.yml" "$DEPLOY/prometheus/alerts_test.yml" "$TMP/"
    promtool check rules "$TMP/alerts.yml" >/dev/null
    (cd "$TMP" && promtool test rules alerts_test.yml >/dev/null) ||
        { (cd "$TMP" && promtool test rules alerts_test.yml) || true; echo "FAIL: alert rule unit tests"; exit 1; }
    sed "s#/etc/prometheus/alerts.yml#$TMP/alerts.yml#" "$DEPLOY/prometheus/prometheus.yml" >"$TMP/prometheus.yml"
    promtool check config "$TMP/prometheus.yml" >/dev/null
    echo "promtool: rules valid, alert unit tests pass, prometheus.yml valid"
else
    echo "SKIPPED promtool checks: promtool not installed (Debian package prometheus)"
fi

if docker compose version >/dev/null 2>&1; then
    (cd "$DEPLOY" && docker compose -f docker-compose.yml config -q)
    echo "compose: 'docker compose config' accepted the file"
elif command -v docker-compose >/dev/null; then
    (cd "$DEPLOY" && docker-compose -f docker-compose.yml config -q)
    (cd "$DEPLOY" && UNLEARND_WORKERS=3 docker-compose -f docker-compose.yml config) >"$TMP/compose.out"
    grep -q 'replicas: 3' "$TMP/compose.out" ||
        { echo "FAIL: UNLEARND_WORKERS does not set the replicas"; exit 1; }
    echo "compose: 'docker-compose config' (v1) accepted the file"
else
    echo "SKIPPED compose check: neither 'docker compose' nor docker-compose installed"
fi
echo "test_deploy_files: OK"
