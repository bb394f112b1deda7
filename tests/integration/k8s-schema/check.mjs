// check.mjs FILE...: validate Kubernetes manifests against the JSON schemas
// shipped in the npm packages kubernetes-models (core and apps APIs),
// @kubernetes-models/keda (ScaledObject) and
// @kubernetes-models/prometheus-operator (PodMonitor, PrometheusRule).
// Prints one line per object; exits 1 when any is invalid or has no schema.
// Run by tests/integration/test_deploy_files.sh after `npm install` here.
import fs from "node:fs";
import * as yaml from "js-yaml";

const loaders = {
  v1: (kind) => import(`kubernetes-models/v1/${kind}`),
  "apps/v1": (kind) => import(`kubernetes-models/apps/v1/${kind}`),
  "policy/v1": (kind) => import(`kubernetes-models/policy/v1/${kind}`),
  "keda.sh/v1alpha1": (kind) => import(`@kubernetes-models/keda/keda.sh/v1alpha1/${kind}`),
  "monitoring.coreos.com/v1": (kind) =>
    import(`@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${kind}`),
};

let bad = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, "utf8"))) {
    if (!doc || doc.kind === "Kustomization") continue;
    const load = loaders[doc.apiVersion];
    if (!load) {
      console.log(`${file}: no schema for apiVersion ${doc.apiVersion}`);
      bad++;
      continue;
    }
    const Model = (await load(doc.kind))[doc.kind];
    try {
      new Model(doc).validate();
      console.log(`${file}: ${doc.apiVersion} ${doc.kind} ${doc.metadata.name}: valid`);
    } catch (e) {
      console.log(`${file}: ${doc.apiVersion} ${doc.kind}: INVALID: ${e.message}`);
      bad++;
    }
  }
}
process.exit(bad ? 1 : 0);
