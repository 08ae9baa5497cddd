//! The type checker's cases: well- and ill-typed expressions in every place a graph has them.

use serde_json::{Value, json};

use crate::{
    graph::{Catalog, CustomKinds, Limits, build},
    rgd::ResourceGraphDefinition,
};

/// A graph reading a Deployment, a Service, a collection of ConfigMaps, a selector of Secrets
/// and a custom kind, with `status.f` (or the field `at` of the deployment) set to `expr`.
fn graph(status: Option<&str>, deployment_field: Option<(&str, &str)>) -> Value {
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "${schema.metadata.name}" },
        "spec": { "selector": { "matchLabels": { "app": "x" } },
                  "template": { "spec": { "containers": [{ "name": "c", "image": "${schema.spec.image}" }] } } }
    });
    if let Some((at, expr)) = deployment_field {
        let mut cursor = &mut deployment;
        for key in at.split('.') {
            cursor = &mut cursor[key];
        }
        *cursor = json!(expr);
    }
    let mut spec = json!({
        "schema": {
            "apiVersion": "v1alpha1", "kind": "Typed",
            "spec": {
                "name": "string | default=a", "image": "string | default=nginx", "replicas": "integer | default=1",
                "ratio": "float | default=0.5", "enabled": "boolean | default=true", "ports": "[]integer",
                "regions": "[]string", "labels": "map[string]string", "values": "object",
                "nested": { "size": "integer | default=1", "tags": "[]string" }
            }
        },
        "resources": [
            { "id": "deployment", "template": deployment },
            { "id": "service", "template": { "apiVersion": "v1", "kind": "Service", "metadata": { "name": "${deployment.metadata.name}" },
              "spec": { "ports": [{ "port": 80 }] } } },
            { "id": "configs", "forEach": [{ "region": "${schema.spec.regions}" }],
              "template": { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "${schema.metadata.name + '-' + region}" },
                            "data": { "region": "${region}" } } },
            { "id": "secrets", "externalRef": { "apiVersion": "v1", "kind": "Secret", "metadata": { "selector": { "matchLabels": { "a": "b" } } } } },
            { "id": "widget", "template": { "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "${schema.metadata.name}" } } }
        ]
    });
    if let Some(expr) = status {
        spec["schema"]["status"] = json!({ "f": expr });
    }
    json!({ "apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition", "metadata": { "name": "typed" }, "spec": spec })
}

fn built(doc: &Value) -> Result<crate::graph::Graph, String> {
    let rgd = ResourceGraphDefinition::from_value(doc, "typed").map_err(|e| e.to_string())?;
    build(&rgd, Limits::default(), &Catalog::new(CustomKinds::Unchecked)).map_err(|e| e.to_string())
}

/// The CRD schema inferred for `status.f = ${expr}`, or the admission error.
fn status_of(expr: &str) -> Result<Value, String> {
    let g = built(&graph(Some(&format!("${{{expr}}}")), None))?;
    Ok(g.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["f"].clone())
}

/// Well-typed status expressions and the schema type inferred for each.
const WELL_TYPED: &[(&str, &str)] = &[
    ("schema.spec.name", "string"),
    ("schema.spec.replicas", "integer"),
    ("schema.spec.ratio", "number"),
    ("schema.spec.enabled", "boolean"),
    ("schema.spec.replicas + 1", "integer"),
    ("schema.spec.ratio * 2.0", "number"),
    ("schema.spec.name + '-x'", "string"),
    ("schema.spec.replicas > 1 && schema.spec.enabled", "boolean"),
    ("schema.spec.ports", "array"),
    ("schema.spec.ports.map(p, p * 2)", "array"),
    ("schema.spec.regions.filter(r, r.startsWith('eu'))", "array"),
    ("schema.spec.regions.exists(r, r == 'eu')", "boolean"),
    ("schema.spec.regions.all(r, size(r) > 1)", "boolean"),
    ("size(schema.spec.regions)", "integer"),
    ("schema.spec.labels", "object"),
    ("schema.spec.labels['app']", "string"),
    ("schema.spec.nested.size", "integer"),
    ("schema.spec.nested.tags[0]", "string"),
    ("schema.spec.?name.orValue('d')", "string"),
    ("has(schema.spec.name)", "boolean"),
    ("schema.metadata.name", "string"),
    ("schema.metadata.labels", "object"),
    ("schema.metadata.generation", "integer"),
    ("deployment.status.availableReplicas", "integer"),
    ("deployment.spec.replicas", "integer"),
    (
        "deployment.status.conditions.exists(c, c.type == 'Available' && c.status == 'True')",
        "boolean",
    ),
    ("deployment.status.conditions.map(c, c.type)", "array"),
    ("deployment.spec.template.spec.containers[0].image", "string"),
    ("deployment.metadata.name", "string"),
    ("deployment.spec.selector.matchLabels", "object"),
    ("deployment.status", "object"),
    ("service.spec.clusterIP", "string"),
    ("service.spec.ports[0].port", "integer"),
    (
        "service.spec.ports[0].targetPort",
        "x-kubernetes-preserve-unknown-fields",
    ),
    ("service.status.loadBalancer.ingress[0].hostname", "string"),
    ("size(configs)", "integer"),
    ("configs.map(c, c.metadata.name)", "array"),
    ("configs[0].data", "object"),
    ("secrets.map(s, s.metadata.name)", "array"),
    (
        "widget.spec.anything.at.all",
        "x-kubernetes-preserve-unknown-fields",
    ),
    (
        "schema.spec.values.free.form",
        "x-kubernetes-preserve-unknown-fields",
    ),
    ("string(schema.spec.replicas)", "string"),
    ("int(schema.spec.name)", "integer"),
    ("schema.spec.enabled ? 'on' : 'off'", "string"),
    ("cel.bind(n, schema.spec.replicas, n * n)", "integer"),
    (
        "'%s-%d'.format([schema.spec.name, schema.spec.replicas])",
        "string",
    ),
    ("schema.spec.regions.join(',')", "string"),
    ("json.marshal(schema.spec.labels)", "string"),
    ("json.unmarshal('{}')", "x-kubernetes-preserve-unknown-fields"),
    ("random.seededString(8, schema.metadata.name)", "string"),
    ("quantity('1Gi').isGreaterThan(quantity('1Mi'))", "boolean"),
    ("schema.spec.labels.merge({'a': 'b'})", "object"),
];

#[test]
fn well_typed_expressions_are_admitted_and_give_their_status_field_a_type() {
    assert!(WELL_TYPED.len() >= 40);
    for (expr, want) in WELL_TYPED {
        let schema = status_of(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let got = match schema.get("type").and_then(Value::as_str) {
            Some(t) => t.to_string(),
            None => schema
                .as_object()
                .and_then(|m| m.keys().find(|k| k.starts_with("x-kubernetes")).cloned())
                .unwrap_or_default(),
        };
        assert_eq!(got, *want, "{expr}: {schema}");
    }
}

#[test]
fn status_fields_of_lists_and_objects_carry_their_element_and_field_types() {
    assert_eq!(
        status_of("schema.spec.ports").unwrap(),
        json!({ "type": "array", "items": { "type": "integer" } })
    );
    assert_eq!(
        status_of("schema.spec.labels").unwrap(),
        json!({ "type": "object", "additionalProperties": { "type": "string" } })
    );
    let status = status_of("deployment.status").unwrap();
    assert_eq!(status["properties"]["availableReplicas"]["type"], "integer");
    assert_eq!(
        status["properties"]["conditions"]["items"]["properties"]["type"]["type"],
        "string"
    );
}

/// Ill-typed status expressions and a piece of each message.
const ILL_TYPED: &[(&str, &str)] = &[
    (
        "deployment.status.availableReplica",
        "undefined field 'availableReplica' on type 'deployment.status' (did you mean 'availableReplicas'?)",
    ),
    ("deployment.spec.replica", "(did you mean 'replicas'?)"),
    ("deployment.metadata.nmae", "(did you mean 'name'?)"),
    (
        "deployment.spec.replicas.foo",
        "undefined field 'foo' on type 'int'",
    ),
    ("service.spec.selectr", "(did you mean 'selector'?)"),
    ("service.spec.clusterIp", "(did you mean 'clusterIP'?)"),
    ("service.spec.ports[0].prot", "(did you mean 'port'?)"),
    ("deployment.status.conditions[0].typ", "(did you mean 'type'?)"),
    ("configs[0].dat", "(did you mean 'data'?)"),
    ("configs.nope", "undefined field 'nope'"),
    (
        "schema.spec.replicas + 'x'",
        "no matching overload for '_+_' with argument types (int, string)",
    ),
    ("schema.spec.name - 1", "no matching overload for '_-_'"),
    (
        "schema.spec.replicas + 1.5",
        "no matching overload for '_+_' with argument types (int, double)",
    ),
    ("schema.spec.enabled + 1", "no matching overload"),
    ("schema.spec.name * 2", "no matching overload"),
    ("!schema.spec.name", "no matching overload for '!_'"),
    ("schema.spec.name && true", "no matching overload for '_&&_'"),
    ("-schema.spec.name", "no matching overload for '-_'"),
    (
        "schema.spec.regions + schema.spec.name",
        "no matching overload for '_+_'",
    ),
    ("schema.spec.ports.map(p, p + 'x')", "no matching overload"),
    ("schema.spec.regions.filter(r, r + 1)", "no matching overload"),
    ("schema.spec.regions.exists(r, r)", "no matching overload"),
    ("size(schema.spec.replicas)", "no matching overload for 'size'"),
    (
        "schema.spec.name.startsWith(1)",
        "no matching overload for 'startsWith'",
    ),
    ("schema.spec.name.split(1)", "no matching overload"),
    ("schema.spec.regions.join(1)", "no matching overload"),
    (
        "schema.spec.name.lowerAscii(1)",
        "'lowerAscii' expects exactly 0 arguments, got 1",
    ),
    ("schema.spec.labels['a'] + 1", "no matching overload"),
    ("schema.spec.replicas.size()", "no matching overload"),
    ("schema.spec.ports[0].foo", "undefined field 'foo' on type 'int'"),
    (
        "deployment.metadata.name.foo",
        "undefined field 'foo' on type 'string'",
    ),
    (
        "deployment.status.conditions.map(c, c.nope)",
        "undefined field 'nope'",
    ),
    ("schema.spec.replicas < 'one'", "no matching overload for '_<_'"),
    ("schema.spec.enabled ? 1 : 'x' + 1", "no matching overload"),
    (
        "random.seededString('8', schema.metadata.name)",
        "no matching overload for 'random.seededString'",
    ),
    (
        "random.seededInt(1, 2, 3)",
        "no matching overload for 'random.seededInt'",
    ),
    ("json.unmarshal(1)", "no matching overload for 'json.unmarshal'"),
    ("hash.sha256(1)", "no matching overload for 'hash.sha256'"),
    ("quantity(1)", "no matching overload for 'quantity'"),
    (
        "url('http://x').getHost(1)",
        "'getHost' expects exactly 0 arguments",
    ),
    ("semver('1.0.0').major() + 'x'", "no matching overload"),
    ("schema.spec.labels.merge(1)", "no matching overload for 'merge'"),
    ("lists.range('3')", "no matching overload for 'lists.range'"),
    (
        "schema.spec.regions.slice('a', 1)",
        "no matching overload for 'slice'",
    ),
    ("base64.encode(1)", "no matching overload for 'base64.encode'"),
];

#[test]
fn ill_typed_expressions_are_refused_with_the_reason() {
    assert!(ILL_TYPED.len() >= 40);
    let wrong: Vec<String> = ILL_TYPED
        .iter()
        .filter_map(|(expr, want)| match status_of(expr) {
            Ok(schema) => Some(format!("{expr}: admitted as {schema}")),
            Err(e) if !e.contains(want) || !e.starts_with("status \"f\": expression ") => {
                Some(format!("{expr}: {e}"))
            }
            Err(_) => None,
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_template_field_refuses_a_value_of_the_wrong_type_with_kros_message() {
    let err = built(&graph(None, Some(("spec.replicas", "${schema.spec.name}")))).unwrap_err();
    assert_eq!(
        err,
        "type mismatch in resource \"deployment\" at path \"spec.replicas\": expression \"schema.spec.name\" returns type \"string\" but expected \"int\""
    );
    for (at, expr, found, expected) in [
        ("spec.paused", "${schema.spec.replicas}", "int", "bool"),
        ("spec.minReadySeconds", "${schema.spec.ratio}", "double", "int"),
        (
            "spec.selector.matchLabels",
            "${schema.spec.regions}",
            "list(string)",
            "map(string, string)",
        ),
        (
            "spec.template.spec.containers",
            "${schema.spec.name}",
            "string",
            "list(object)",
        ),
        (
            "spec.revisionHistoryLimit",
            "${schema.spec.labels}",
            "map(string, string)",
            "int",
        ),
    ] {
        let err = built(&graph(None, Some((at, expr)))).unwrap_err();
        assert!(
            err.contains(&format!("at path \"{at}\""))
                && err.contains(&format!("returns type \"{found}\" but expected \"{expected}\"")),
            "{at}: {err}"
        );
    }
}

#[test]
fn a_template_field_accepts_values_that_fit_structurally() {
    for (at, expr) in [
        ("spec.replicas", "${schema.spec.replicas}"),
        ("spec.replicas", "${schema.spec.values.anything}"),
        ("spec.selector.matchLabels", "${schema.spec.labels}"),
        ("spec.selector.matchLabels", "${{'app': schema.spec.name}}"),
        ("spec.template.metadata.labels", "${schema.metadata.labels}"),
        (
            "spec.template.spec.containers",
            "${[{'name': 'a', 'image': schema.spec.image}]}",
        ),
        ("spec.strategy.rollingUpdate.maxSurge", "${schema.spec.replicas}"),
        (
            "spec.strategy.rollingUpdate.maxUnavailable",
            "${schema.spec.name}",
        ),
        ("metadata.annotations", "${schema.spec.labels}"),
    ] {
        built(&graph(None, Some((at, expr)))).unwrap_or_else(|e| panic!("{at} = {expr}: {e}"));
    }
}

#[test]
fn an_interpolated_string_needs_string_expressions() {
    let err = built(&graph(
        None,
        Some(("metadata.name", "web-${schema.spec.replicas}")),
    ))
    .unwrap_err();
    assert_eq!(
        err,
        "type mismatch in resource \"deployment\" at path \"metadata.name\": expression \"schema.spec.replicas\" returns type \"int\" but expected \"string\""
    );
}

#[test]
fn conditions_must_be_boolean_and_for_each_a_list() {
    let mut doc = graph(None, None);
    doc["spec"]["resources"][0]["readyWhen"] = json!(["${deployment.spec.replicas}"]);
    assert_eq!(
        built(&doc).unwrap_err(),
        "resource \"deployment\" readyWhen \"deployment.spec.replicas\": must return bool, got \"int\""
    );
    let mut doc = graph(None, None);
    doc["spec"]["resources"][1]["includeWhen"] = json!(["${schema.spec.name}"]);
    assert_eq!(
        built(&doc).unwrap_err(),
        "resource \"service\" includeWhen \"schema.spec.name\": must return bool, got \"string\""
    );
    let mut doc = graph(None, None);
    doc["spec"]["resources"][2]["forEach"] = json!([{ "region": "${schema.spec.name}" }]);
    assert_eq!(
        built(&doc).unwrap_err(),
        "resource \"configs\" forEach \"region\": must return a list, got \"string\""
    );
    let mut doc = graph(None, None);
    doc["spec"]["resources"][2]["readyWhen"] = json!(["${each.data.region == 'eu'}"]);
    built(&doc).expect("each is an element of the collection");
    doc["spec"]["resources"][2]["readyWhen"] = json!(["${each.dat.region == 'eu'}"]);
    assert!(built(&doc).unwrap_err().contains("(did you mean 'data'?)"));
}

#[test]
fn a_for_each_iterator_has_the_element_type_of_its_list() {
    let mut doc = graph(None, None);
    doc["spec"]["resources"][2]["template"]["data"]["region"] = json!("${region + 1}");
    assert!(
        built(&doc)
            .unwrap_err()
            .contains("no matching overload for '_+_' with argument types (string, int)"),
        "region is a string"
    );
}

#[test]
fn an_unknown_kind_of_a_kubernetes_group_is_refused_and_a_custom_one_is_refused_only_when_the_cluster_says_so()
 {
    let mut doc = graph(None, None);
    doc["spec"]["resources"][1]["template"]["kind"] = json!("Servic");
    assert_eq!(
        built(&doc).unwrap_err(),
        "failed to build resource \"service\": failed to get schema for resource service: cannot resolve group version kind \"v1, Kind=Servic\": schema not found (did you mean kind Service?)"
    );
    let doc = graph(None, None);
    let rgd = ResourceGraphDefinition::from_value(&doc, "typed").unwrap();
    let err = build(&rgd, Limits::default(), &Catalog::new(CustomKinds::Refused)).unwrap_err();
    assert!(
        matches!(err, crate::graph::Error::KindNotFound { ref id, .. } if id == "widget"),
        "{err}"
    );
}
