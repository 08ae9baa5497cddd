use serde_json::{Value, json};

use super::{catalog::Catalog, runtime::*, *};
use crate::{
    child::{ChildKey, ObservedChild},
    cluster::{Cluster, Offline},
    rgd::ResourceGraphDefinition,
};

fn rgd(spec: Value) -> ResourceGraphDefinition {
    ResourceGraphDefinition::from_value(
        &json!({ "apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition", "metadata": { "name": "test" }, "spec": spec }),
        "test",
    )
    .unwrap()
}

fn webapp() -> Value {
    json!({
        "schema": {
            "apiVersion": "v1alpha1", "kind": "WebApp",
            "spec": { "image": "string | default=nginx", "replicas": "integer | default=2",
                      "ingress": { "enabled": "boolean | default=false" } },
            "status": { "available": "${deployment.status.availableReplicas}", "ready": "${deployment.status.availableReplicas == schema.spec.replicas}",
                        "endpoint": "http://${service.metadata.name}" }
        },
        "resources": [
            { "id": "service", "template": { "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "${deployment.metadata.name}" }, "spec": { "ports": [{ "port": 80 }] } } },
            { "id": "deployment", "readyWhen": ["${deployment.status.availableReplicas == deployment.spec.replicas}"],
              "template": { "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": "${schema.metadata.name}" },
                "spec": { "replicas": "${schema.spec.replicas}", "template": { "spec": { "containers": [{ "name": "app", "image": "${schema.spec.image}:latest" }] } } } } },
            { "id": "ingress", "includeWhen": ["${schema.spec.ingress.enabled}"],
              "template": { "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": { "name": "${service.metadata.name}" } } }
        ]
    })
}

fn build_err(spec: Value) -> String {
    build(&rgd(spec), Limits::default(), &Catalog::default())
        .unwrap_err()
        .to_string()
}

fn with_resources(resources: Value) -> Value {
    json!({ "schema": { "apiVersion": "v1alpha1", "kind": "Thing", "spec": { "name": "string", "items": "[]string" } }, "resources": resources })
}

fn cm(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name } })
}

#[test]
fn dependencies_order_resources_and_keep_declaration_order_otherwise() {
    let g = build(&rgd(webapp()), Limits::default(), &Catalog::default()).unwrap();
    assert_eq!(g.topological_order(), ["deployment", "service", "ingress"]);
    assert_eq!(
        g.node("service").unwrap().dependencies.iter().collect::<Vec<_>>(),
        ["deployment"]
    );
    assert_eq!(
        g.resources_status(),
        json!([{ "id": "service", "dependencies": [{ "id": "deployment" }] }, { "id": "ingress", "dependencies": [{ "id": "service" }] }])
    );
}

#[test]
fn apply_orders_number_layers_as_kro_does_from_one_with_dependents_highest() {
    // base <- middle <- leaf, and side depends on base only: the layers, dependents first, are
    // [leaf, side], [middle], [base], numbered 3, 2, 1.
    let cm_from = |name: &str, from: &str| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "from": format!("${{{from}.metadata.name}}") } });
    let g = build(
        &rgd(with_resources(json!([
            { "id": "base", "template": cm("base") },
            { "id": "middle", "template": cm_from("middle", "base") },
            { "id": "leaf", "template": cm_from("leaf", "middle") },
            { "id": "side", "template": cm_from("side", "base") },
        ]))),
        Limits::default(),
        &Catalog::default(),
    )
    .unwrap();
    let orders = g.apply_orders();
    let get = |id: &str| orders[id];
    assert_eq!(
        (get("base"), get("middle"), get("leaf"), get("side")),
        (1, 2, 3, 3)
    );
    // Independent resources are one layer: order 1.
    let flat = build(
        &rgd(with_resources(
            json!([{ "id": "a", "template": cm("a") }, { "id": "b", "template": cm("b") }]),
        )),
        Limits::default(),
        &Catalog::default(),
    )
    .unwrap();
    assert_eq!(flat.apply_orders().values().collect::<Vec<_>>(), [&1, &1]);
}

#[test]
fn runtime_condition_functions_belong_to_status_conditions_only() {
    let err = build_err(with_resources(json!([{ "id": "c", "template": {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" },
        "data": { "s": "${runtime.condition(schema, 'Ready').status}" } } }])));
    assert!(
        err.contains("runtime.condition is only allowed in spec.schema.status.conditions"),
        "{err}"
    );
}

#[test]
fn custom_conditions_are_compiled_with_their_keys_made_strings() {
    let mut spec = with_resources(json!([{ "id": "c", "template": cm("c") }]));
    spec["schema"]["status"] = json!({ "conditions": [
        "${runtime.newCondition({type: 'Ready', status: c.metadata.name == 'c' ? 'True' : 'False', reason: 'Named', message: ''})}"
    ] });
    let g = build(&rgd(spec), Limits::default(), &Catalog::default()).unwrap();
    assert_eq!(g.conditions.len(), 1);
    assert!(
        g.conditions[0]
            .source()
            .starts_with("runtime.newCondition({'type': 'Ready', 'status':"),
        "{}",
        g.conditions[0].source()
    );
    // A type error inside a condition is refused like any other.
    let mut bad = with_resources(json!([{ "id": "c", "template": cm("c") }]));
    bad["schema"]["status"] =
        json!({ "conditions": ["${runtime.newCondition({type: 'Ready', status: c.metadata.name + 1})}"] });
    let err = build_err(bad);
    assert!(err.contains("status.conditions[0]"), "{err}");
}

#[test]
fn the_instance_crd_has_kros_shape() {
    let g = build(&rgd(webapp()), Limits::default(), &Catalog::default()).unwrap();
    let crd = &g.crd;
    assert_eq!(crd["metadata"]["name"], "webapps.kro.run");
    assert_eq!(
        crd["metadata"]["labels"]["kro.run/resource-graph-definition-name"],
        "test"
    );
    assert_eq!(
        crd["spec"]["names"],
        json!({ "kind": "WebApp", "listKind": "WebAppList", "plural": "webapps", "singular": "webapp" })
    );
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(
        (version["served"].clone(), version["storage"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(version["subresources"], json!({ "status": {} }));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["State", "Ready", "Age"]);
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    assert_eq!(status["state"], json!({ "type": "string" }));
    assert_eq!(status["conditions"]["type"], "array");
    assert_eq!(status["ready"], json!({ "type": "boolean" }));
    assert_eq!(status["endpoint"], json!({ "type": "string" }));
    assert_eq!(
        status["available"],
        json!({ "type": "integer" }),
        "typed from deployment.status.availableReplicas"
    );
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["ingress"]["default"], json!({}));
}

#[test]
fn user_printer_columns_replace_the_defaults() {
    let mut spec = webapp();
    spec["schema"]["additionalPrinterColumns"] =
        json!([{ "name": "Image", "type": "string", "jsonPath": ".spec.image" }]);
    spec["schema"]["shortNames"] = json!(["wa"]);
    spec["schema"]["scope"] = json!("Cluster");
    let g = build(&rgd(spec), Limits::default(), &Catalog::default()).unwrap();
    assert_eq!(
        g.crd["spec"]["versions"][0]["additionalPrinterColumns"],
        json!([{ "name": "Image", "type": "string", "jsonPath": ".spec.image" }])
    );
    assert_eq!(g.crd["spec"]["names"]["shortNames"], json!(["wa"]));
    assert_eq!(g.crd["spec"]["scope"], "Cluster");
}

#[test]
fn invalid_graphs_are_refused_with_kros_messages() {
    let cases = [
        (
            with_resources(json!([
                { "id": "a", "template": { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "${b.metadata.name}" } } },
                { "id": "b", "template": { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "${a.metadata.name}" } } }
            ])),
            "failed to build dependency graph: graph contains a cycle: a -> b -> a",
        ),
        (
            with_resources(
                json!([{ "id": "a", "template": { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "${nope.metadata.name}" } } }]),
            ),
            "references unknown identifiers: [nope]",
        ),
        (
            with_resources(
                json!([{ "id": "a", "template": { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "${foo(schema.spec.name)}" } } }]),
            ),
            "uses unknown functions: [foo]",
        ),
        (
            with_resources(
                json!([{ "id": "a", "template": { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "${schema.spec.nmae}" } } }]),
            ),
            "references schema.spec.nmae, which the instance schema does not define",
        ),
        (
            with_resources(
                json!([{ "id": "a", "template": { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "${schema.spec.name +}" } } }]),
            ),
            "failed to parse expression",
        ),
        (
            with_resources(
                json!([{ "id": "a", "template": { "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "x", "labels": { "kro.run/owned": "false" } } } }]),
            ),
            "labels with prefix \"kro.run/\" are reserved for internal use",
        ),
        (
            with_resources(json!([{ "id": "a", "template": cm("x") }, { "id": "a", "template": cm("y") }])),
            "found resources with duplicate id \"a\"",
        ),
        (
            with_resources(json!([{ "id": "my-cm", "template": cm("x") }])),
            "id my-cm is not a valid KRO resource id: must be lower camelCase",
        ),
        (
            with_resources(json!([{ "id": "schema", "template": cm("x") }])),
            "id schema is a reserved keyword in KRO",
        ),
        (
            with_resources(json!([{ "id": "a", "template": { "kind": "ConfigMap", "metadata": {} } }])),
            "template must have a non-empty string apiVersion",
        ),
        (
            with_resources(json!([{ "id": "a", "template": cm("${a.metadata.uid}") }])),
            "self references are not allowed",
        ),
        (
            with_resources(
                json!([{ "id": "a", "forEach": [{ "entry": "${schema.spec.items}" }], "template": cm("fixed") }]),
            ),
            "all forEach dimensions must be used to produce a unique resource identity",
        ),
        (
            with_resources(
                json!([{ "id": "a", "template": cm("x") }, { "id": "b", "readyWhen": ["${a.status.x == 1}"], "template": cm("y") }]),
            ),
            "may only reference b",
        ),
        (
            json!({ "schema": { "apiVersion": "v1alpha1", "kind": "Thing", "status": { "fixed": "TCP" } }, "resources": [] }),
            "status fields without expressions are not supported: [fixed]",
        ),
        (
            json!({ "schema": { "apiVersion": "v1", "kind": "thing" } }),
            "kind \"thing\" is not a valid kind name",
        ),
    ];
    for (spec, want) in cases {
        let got = build_err(spec);
        assert!(got.contains(want), "got:  {got}\nwant: {want}");
    }
}

fn instance(spec: Value) -> Value {
    json!({ "apiVersion": "kro.run/v1alpha1", "kind": "WebApp", "metadata": { "name": "shop", "namespace": "prod", "uid": "u1" }, "spec": spec })
}

fn live(id: &str, object: Value) -> ObservedChild {
    ObservedChild {
        key: ChildKey::new(id),
        object: object.into(),
    }
}

#[test]
fn a_dependent_waits_until_its_dependency_is_ready() {
    let g = build(&rgd(webapp()), Limits::default(), &Catalog::default()).unwrap();
    let inst = instance(json!({ "image": "nginx", "replicas": 2, "ingress": { "enabled": false } }));
    let r = resolve(&g, &inst, &[], &Offline::default());
    assert_eq!(
        r.rendered.iter().map(|c| c.key.id.as_str()).collect::<Vec<_>>(),
        ["deployment"]
    );
    assert_eq!(r.rendered[0].object["spec"]["replicas"], 2);
    assert_eq!(
        r.rendered[0].object["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:latest"
    );
    assert_eq!(
        r.pending,
        [(
            "service".to_string(),
            "waiting for deployment to be ready".to_string()
        )]
    );
    assert_eq!(
        r.skipped,
        ["ingress"],
        "skipped: includeWhen false, even though its dependency is pending"
    );

    // Created but not available: readyWhen holds the service back.
    let deployment = json!({ "metadata": { "name": "shop" }, "spec": { "replicas": 2 }, "status": { "availableReplicas": 1 } });
    let r = resolve(&g, &inst, &[live("deployment", deployment)], &Offline::default());
    assert!(
        matches!(&r.states[0].1, NodeState::NotReady(m) if m.contains("readyWhen")),
        "{:?}",
        r.states
    );
    assert_eq!(r.status["available"], 1, "status projects from the live object");
    assert!(
        r.status.get("endpoint").is_none(),
        "a field whose input is missing is left out"
    );

    let deployment = json!({ "metadata": { "name": "shop" }, "spec": { "replicas": 2 }, "status": { "availableReplicas": 2 } });
    let r = resolve(&g, &inst, &[live("deployment", deployment)], &Offline::default());
    assert_eq!(
        r.rendered.iter().map(|c| c.key.id.as_str()).collect::<Vec<_>>(),
        ["deployment", "service"]
    );
    assert_eq!(r.rendered[1].object["metadata"]["name"], "shop");
    assert_eq!(r.status["ready"], true);
}

#[test]
fn a_skipped_resource_skips_its_dependents() {
    let spec = with_resources(json!([
        { "id": "a", "includeWhen": ["${schema.spec.name == 'on'}"], "template": cm("a") },
        { "id": "b", "template": cm("${a.metadata.name}-b") }
    ]));
    let g = build(&rgd(spec), Limits::default(), &Catalog::default()).unwrap();
    let r = resolve(&g, &instance(json!({ "name": "off" })), &[], &Offline::default());
    assert_eq!(r.skipped, ["a", "b"]);
    assert!(r.rendered.is_empty());
    assert!(r.all_ready(), "skipped resources count as ready");
}

#[test]
fn for_each_expands_the_cartesian_product_in_order() {
    let spec = json!({
        "schema": { "apiVersion": "v1alpha1", "kind": "Thing", "spec": { "regions": "[]string", "tiers": "[]string" } },
        "resources": [{ "id": "cm", "forEach": [{ "region": "${schema.spec.regions}" }, { "tier": "${schema.spec.tiers}" }],
            "readyWhen": ["${each.data.ok == 'yes'}"],
            "template": cm("${region}-${tier}") }]
    });
    let g = build(&rgd(spec), Limits::default(), &Catalog::default()).unwrap();
    let inst = instance(json!({ "regions": ["eu", "us"], "tiers": ["web", "db"] }));
    let r = resolve(&g, &inst, &[], &Offline::default());
    let names: Vec<&str> = r
        .rendered
        .iter()
        .map(|c| c.object["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eu-web", "eu-db", "us-web", "us-db"]);
    assert_eq!(r.rendered[3].key, ChildKey::item("cm", 3));
    let items: Vec<ObservedChild> = (0..4)
        .map(|i| ObservedChild {
            key: ChildKey::item("cm", i),
            object: json!({ "data": { "ok": "yes" } }).into(),
        })
        .collect();
    assert!(resolve(&g, &inst, &items, &Offline::default()).all_ready());
    assert!(!resolve(&g, &inst, &items[..3], &Offline::default()).all_ready());

    let big = instance(
        json!({ "regions": (0..40).map(|i| i.to_string()).collect::<Vec<_>>(), "tiers": (0..40).map(|i| i.to_string()).collect::<Vec<_>>() }),
    );
    let r = resolve(&g, &big, &[], &Offline::default());
    assert!(
        matches!(r.first_error(), Some((_, m)) if m.contains("exceeds the maximum collection size of 1000")),
        "{:?}",
        r.states
    );
}

struct OneConfigMap;

impl Cluster for OneConfigMap {
    fn namespaced(&self, _: &str, _: &str) -> Option<bool> {
        None
    }
    fn get(&self, _: &str, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        (kind == "ConfigMap" && ns == Some("prod") && name == "shared")
            .then(|| json!({ "data": { "region": "eu-west-1" } }))
    }
    fn list(&self, _: &str, _: &str, _: Option<&str>, _: &Value) -> Vec<Value> {
        vec![json!({ "metadata": { "name": "x" } })]
    }
}

#[test]
fn external_references_are_read_and_never_rendered() {
    let spec = with_resources(json!([
        { "id": "shared", "externalRef": { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "shared" } } },
        { "id": "app", "template": { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "app" }, "data": { "region": "${shared.data.region}" } } }
    ]));
    let g = build(&rgd(spec), Limits::default(), &Catalog::default()).unwrap();
    let r = resolve(&g, &instance(json!({})), &[], &OneConfigMap);
    assert_eq!(r.rendered.len(), 1);
    assert_eq!(r.rendered[0].object["data"]["region"], "eu-west-1");
    assert_eq!(
        r.externals[0].namespace.as_deref(),
        Some("prod"),
        "the instance's namespace by default"
    );
    let r = resolve(&g, &instance(json!({})), &[], &Offline::default());
    assert!(
        matches!(&r.states[0].1, NodeState::Pending(m) if m.contains("external reference ConfigMap prod/shared"))
    );
}

#[test]
fn a_type_error_at_runtime_names_the_field_and_expression() {
    // `dyn` escapes the type checker, which refuses `schema.spec.items` here at admission.
    let spec = with_resources(json!([{ "id": "a", "template": cm("x-${dyn(schema.spec.items)}") }]));
    let g = build(&rgd(spec), Limits::default(), &Catalog::default()).unwrap();
    let r = resolve(&g, &instance(json!({ "items": ["a"] })), &[], &Offline::default());
    let (id, message) = r.first_error().unwrap();
    assert_eq!(id, "a");
    assert!(
        message
            .starts_with("field metadata.name: expression \"dyn(schema.spec.items)\" must return a string"),
        "{message}"
    );
}

#[test]
fn a_kind_in_a_kubernetes_reserved_group_is_refused_at_admission() {
    for group in [
        "apiextensions.k8s.io",
        "k8s.io",
        "apps.kubernetes.io",
        "kubernetes.io",
    ] {
        let err = build_err(json!({
            "schema": { "apiVersion": "v1alpha1", "kind": "CustomResourceDefinition", "group": group },
            "resources": []
        }));
        assert!(err.contains("is reserved for Kubernetes"), "{group}: {err}");
        assert!(err.contains(&format!("spec.schema.group {group:?}")), "{err}");
    }
    for group in ["example.com", "k8s.example.io", "notkubernetes.io"] {
        let ok = build(
            &rgd(
                json!({ "schema": { "apiVersion": "v1alpha1", "kind": "Thing", "group": group }, "resources": [] }),
            ),
            Limits::default(),
            &Catalog::default(),
        );
        assert!(ok.is_ok(), "{group}: {:?}", ok.err());
    }
}

#[test]
fn a_template_renders_two_variable_comprehensions_and_deep_merges() {
    let spec = json!({ "schema": { "apiVersion": "v1alpha1", "kind": "Thing",
            "spec": { "labels": "map[string]string", "items": "[]string" } },
        "resources": [{ "id": "a", "template": { "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "a", "labels": "${schema.spec.labels.transformMap(k, v, v + '-x')}",
                "annotations": "${{'base': 'b', 'n': 'old'}.deepMerge(schema.spec.labels)}" },
            "data": { "joined": "${schema.spec.items.transformList(i, s, string(i) + '=' + s).join(',')}" } } }]
    });
    let g = build(&rgd(spec), Limits::default(), &Catalog::default()).unwrap();
    let r = resolve(
        &g,
        &instance(json!({ "labels": { "n": "new", "m": "1" }, "items": ["p", "q"] })),
        &[],
        &Offline::default(),
    );
    let object = &r.rendered[0].object;
    assert_eq!(object["metadata"]["labels"], json!({ "m": "1-x", "n": "new-x" }));
    assert_eq!(
        object["metadata"]["annotations"],
        json!({ "base": "b", "m": "1", "n": "new" })
    );
    assert_eq!(object["data"]["joined"], "0=p,1=q");
}

fn omitting(template_data: Value) -> Value {
    with_resources(
        json!([{ "id": "a", "template": { "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "a", "labels": { "keep": "yes", "drop": "${schema.spec.name == 'x' ? 'shown' : omit()}" },
            "annotations": "${{'a': 'x', 'b': omit()}}" },
        "data": template_data } }]),
    )
}

#[test]
fn omit_needs_its_feature_gate_and_removes_the_field_it_fills() {
    let spec = omitting(json!({ "v": "1" }));
    let err = build_err(spec.clone());
    assert!(
        err.contains("omit() requires the CELOmitFunction feature gate"),
        "{err}"
    );
    let gated = Limits {
        omit: true,
        ..Limits::default()
    };
    let g = build(&rgd(spec), gated, &Catalog::default()).unwrap();
    let shown = resolve(&g, &instance(json!({ "name": "x" })), &[], &Offline::default());
    assert_eq!(
        shown.rendered[0].object["metadata"]["labels"],
        json!({ "keep": "yes", "drop": "shown" })
    );
    let omitted = resolve(&g, &instance(json!({ "name": "y" })), &[], &Offline::default());
    assert_eq!(
        omitted.rendered[0].object["metadata"]["labels"],
        json!({ "keep": "yes" })
    );
    assert_eq!(
        omitted.rendered[0].object["metadata"]["annotations"],
        json!({ "a": "x" }),
        "an omitted entry inside a value goes too"
    );
}

#[test]
fn omit_is_refused_outside_template_fields_and_on_an_objects_name() {
    let gated = Limits {
        omit: true,
        ..Limits::default()
    };
    let err = |spec: Value| {
        build(&rgd(spec), gated, &Catalog::default())
            .unwrap_err()
            .to_string()
    };
    let mut spec = omitting(json!({}));
    spec["resources"][0]["includeWhen"] = json!(["${omit()}"]);
    assert!(err(spec).contains("omit() is only allowed in resource template fields"));
    let named = with_resources(json!([{ "id": "a", "template": cm("${omit()}") }]));
    assert!(err(named).contains("omit() cannot remove metadata.name"));
    let text = omitting(json!({ "v": "x-${omit()}" }));
    assert!(err(text).contains("omit() must be the whole value of a field"));
}
