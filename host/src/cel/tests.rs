use serde_json::{Value as Json, json};

use super::*;

fn scope() -> Scope {
    let mut s = Scope::new();
    s.set(
        "schema",
        json!({
            "metadata": { "name": "shop", "namespace": "prod", "uid": "3f6d2a9e-0000-4000-8000-000000000001" },
            "spec": { "name": "web", "replicas": 3, "tags": ["b", "a", "c"], "ratio": 0.5,
                      "labels": { "z": "1", "a": "2", "m": "3" }, "cpu": "250m", "empty": [] }
        }),
    );
    s.set("deployment", json!({ "status": { "availableReplicas": 2, "conditions": [{ "type": "Available", "status": "True" }] } }));
    s
}

fn eval(src: &str) -> Json {
    engine()
        .compile(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .eval(&scope())
        .unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn eval_err(src: &str) -> EvalError {
    engine()
        .compile(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .eval(&scope())
        .unwrap_err()
}

fn compile_err(src: &str) -> CompileError {
    engine().compile(src).unwrap_err()
}

#[test]
fn json_integers_do_arithmetic_as_ints() {
    assert_eq!(eval("schema.spec.replicas * 2"), json!(6));
    assert_eq!(eval("deployment.status.availableReplicas * 10"), json!(20));
    assert_eq!(eval("schema.spec.ratio * 2.0"), json!(1.0));
}

#[test]
fn strings_library_works() {
    assert_eq!(eval("schema.spec.name + '-svc'"), json!("web-svc"));
    assert_eq!(eval("schema.spec.tags.join(',')"), json!("b,a,c"));
    assert_eq!(eval("'a,b'.split(',')"), json!(["a", "b"]));
    assert_eq!(eval("'Hello'.lowerAscii() + 'x'.upperAscii()"), json!("helloX"));
    assert_eq!(eval("'%s-%d'.format(['a', 1])"), json!("a-1"));
    assert_eq!(eval("'abcdef'.substring(1, 3)"), json!("bc"));
    assert_eq!(eval("'  x '.trim()"), json!("x"));
    assert_eq!(eval("'a.b'.replace('.', '-')"), json!("a-b"));
    assert_eq!(eval("'abc'.indexOf('c')"), json!(2));
    assert_eq!(eval("'abc'.charAt(1)"), json!("b"));
    assert_eq!(
        eval("'web'.startsWith('w') && 'web'.endsWith('b') && 'web'.contains('e')"),
        json!(true)
    );
    assert_eq!(eval("'abc'.matches('^a.c$')"), json!(true));
    assert_eq!(eval("string(schema.spec.replicas)"), json!("3"));
}

#[test]
fn lists_library_works() {
    assert_eq!(eval("[1, 2, 3].sum()"), json!(6));
    assert_eq!(eval("[1.5, 2].sum()"), json!(3.5));
    assert_eq!(eval("[3, 1, 2].min()"), json!(1));
    assert_eq!(eval("[3, 1, 2].max()"), json!(3));
    assert_eq!(eval("[1, 2, 2].isSorted()"), json!(true));
    assert_eq!(eval("schema.spec.tags.sort()"), json!(["a", "b", "c"]));
    assert_eq!(eval("schema.spec.tags.indexOf('a')"), json!(1));
    assert_eq!(eval("[1, 2, 1].lastIndexOf(1)"), json!(2));
    assert_eq!(eval("lists.range(3)"), json!([0, 1, 2]));
    assert_eq!(eval("[1, 2, 3, 4].slice(1, 3)"), json!([2, 3]));
    assert_eq!(eval("[[1], [2, 3]].flatten()"), json!([1, 2, 3]));
    assert_eq!(eval("[1, 1, 2].distinct()"), json!([1, 2]));
    assert_eq!(eval("lists.setAtIndex([1, 2], 0, 9)"), json!([9, 2]));
    assert_eq!(eval("lists.insertAtIndex([1, 2], 2, 9)"), json!([1, 2, 9]));
    assert_eq!(eval("lists.removeAtIndex([1, 2], 0)"), json!([2]));
    assert!(matches!(eval_err("[].min()"), EvalError::Failed(m) if m.contains("list is empty")));
}

#[test]
fn macros_and_bind_work() {
    assert_eq!(
        eval("schema.spec.tags.map(t, t.upperAscii())"),
        json!(["B", "A", "C"])
    );
    assert_eq!(eval("schema.spec.tags.filter(t, t != 'a')"), json!(["b", "c"]));
    assert_eq!(eval("schema.spec.tags.exists(t, t == 'a')"), json!(true));
    assert_eq!(eval("schema.spec.tags.all(t, size(t) == 1)"), json!(true));
    assert_eq!(eval("schema.spec.tags.existsOne(t, t == 'a')"), json!(true));
    assert_eq!(eval("cel.bind(x, schema.spec.replicas, x * x)"), json!(9));
    assert_eq!(eval("schema.spec.tags.sortBy(t, t)"), json!(["a", "b", "c"]));
}

#[test]
fn map_iteration_is_in_key_order() {
    for _ in 0..20 {
        assert_eq!(eval("schema.spec.labels.map(k, k)"), json!(["a", "m", "z"]));
    }
    assert_eq!(eval("schema.spec.labels.filter(k, k != 'm')"), json!(["a", "z"]));
}

#[test]
fn optional_access_and_has_work() {
    assert_eq!(eval("schema.spec.?missing.orValue('d')"), json!("d"));
    assert_eq!(eval("schema.?spec.?name.orValue('x')"), json!("web"));
    assert_eq!(eval("schema.spec.tags[?5].orValue('none')"), json!("none"));
    assert_eq!(
        eval("has(schema.spec.name) && !has(schema.spec.missing)"),
        json!(true)
    );
}

#[test]
fn kro_random_matches_kros_algorithm() {
    // Characters repeat every eight positions: kro's rehash branch never runs.
    let s = eval("random.seededString(16, 'test-seed')");
    let s = s.as_str().unwrap();
    assert_eq!(s.len(), 16);
    assert_eq!(&s[..8], &s[8..]);
    assert!(s.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
    assert_eq!(
        eval("random.seededString(10, 'test-seed')"),
        eval("random.seededString(10, 'test-seed')")
    );
    assert_ne!(
        eval("random.seededString(10, 'a')"),
        eval("random.seededString(10, 'b')")
    );
    assert_eq!(eval("random.seededInt(5, 6, 'seed')"), json!(5));
    let port = eval("random.seededInt(30000, 32768, schema.metadata.uid)")
        .as_i64()
        .unwrap();
    assert!((30000..32768).contains(&port));
    assert!(
        matches!(eval_err("random.seededString(0, 'x')"), EvalError::Failed(m) if m.contains("length must be positive"))
    );
    assert!(
        matches!(eval_err("random.seededInt(5, 5, 'x')"), EvalError::Failed(m) if m.contains("min must be less than max"))
    );
}

#[test]
fn kro_random_known_values() {
    // Computed independently from kro's algorithm (sha256 words mod 36 over [0-9a-z]).
    assert_eq!(
        functions::seeded_string(16, "test-seed").unwrap(),
        "5czheg3o5czheg3o"
    );
    assert_eq!(functions::seeded_int(30000, 32768, "my-service").unwrap(), 31247);
    // seededInt reads the first 8 bytes big-endian: range of 1 always gives min.
    assert_eq!(functions::seeded_int(-3, -2, "anything").unwrap(), -3);
}

#[test]
fn hash_json_and_base64_work() {
    assert_eq!(eval("base64.encode(b'hi')"), json!("aGk="));
    assert_eq!(eval("string(base64.decode('aGk='))"), json!("hi"));
    // FNV-1a 64 of "" is the offset basis.
    assert_eq!(eval("base64.encode(hash.fnv64a(''))"), json!("y/Kc5IQiIyU="));
    assert_eq!(
        eval("base64.encode(hash.sha256('abc'))"),
        json!("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=")
    );
    assert_eq!(
        eval("base64.encode(hash.md5('abc'))"),
        json!("kAFQmDzST7DWlj99KOF/cg==")
    );
    assert_eq!(
        eval("json.marshal({'b': 1, 'a': [true, null]})"),
        json!(r#"{"a":[true,null],"b":1}"#)
    );
    assert_eq!(eval("json.unmarshal('{\"x\": [1, 2]}').x[1]"), json!(2));
    assert!(matches!(eval_err("json.unmarshal('{')"), EvalError::Failed(m) if m.contains("invalid JSON")));
}

#[test]
fn map_merge_lets_the_argument_win() {
    assert_eq!(
        eval("{'a': 1, 'c': 3}.merge({'a': 2, 'b': 2})"),
        json!({ "a": 2, "b": 2, "c": 3 })
    );
}

#[test]
fn kubernetes_libraries_work() {
    assert_eq!(
        eval("quantity(schema.spec.cpu).isLessThan(quantity('1'))"),
        json!(true)
    );
    assert_eq!(eval("quantity('1Gi').compareTo(quantity('1024Mi'))"), json!(0));
    assert_eq!(
        eval("quantity('1500m').add(quantity('500m')).asInteger()"),
        json!(2)
    );
    assert_eq!(eval("quantity('1.5').isInteger()"), json!(false));
    assert_eq!(eval("isQuantity('1Ki') && !isQuantity('one')"), json!(true));
    assert_eq!(eval("quantity('1000m')"), json!("1"));
    assert_eq!(eval("'abc123def456'.find('[0-9]+')"), json!("123"));
    assert_eq!(eval("'abc123def456'.findAll('[0-9]+')"), json!(["123", "456"]));
    assert_eq!(
        eval("url('https://example.com:8443/a/b?x=1').getHostname()"),
        json!("example.com")
    );
    assert_eq!(
        eval("url('https://example.com:8443/a/b?x=1').getPort()"),
        json!("8443")
    );
    assert_eq!(
        eval("url('https://example.com/a?x=1&x=2').getQuery()"),
        json!({ "x": ["1", "2"] })
    );
    assert_eq!(eval("semver('1.2.3').isLessThan(semver('1.10.0'))"), json!(true));
    assert_eq!(eval("semver('v2.0.1').major()"), json!(2));
    assert_eq!(eval("ip('10.0.0.1').family()"), json!(4));
    assert_eq!(eval("cidr('10.0.0.0/8').containsIP(ip('10.1.2.3'))"), json!(true));
    assert_eq!(eval("cidr('10.0.0.0/8').containsIP('11.1.2.3')"), json!(false));
    assert_eq!(eval("cidr('10.1.2.3/8').masked()"), json!("10.0.0.0/8"));
    assert_eq!(
        eval("isIP('::1') && isURL('http://x') && isSemver('1.0.0')"),
        json!(true)
    );
}

#[test]
fn unknown_functions_are_refused_at_admission_with_kros_message() {
    assert_eq!(
        compile_err("foo(1) + bar.baz(2)").to_string(),
        "uses unknown functions: [baz foo]"
    );
    assert_eq!(
        compile_err("math.greatest(1, 2)").to_string(),
        "uses unknown functions: [greatest]"
    );
    assert_eq!(
        compile_err("schema.spec.x == null ? omit() : 1").to_string(),
        "omit() requires the CELOmitFunction feature gate"
    );
    assert!(matches!(compile_err("schema.spec.("), CompileError::Parse(_)));
}

#[test]
fn references_name_variables_paths_and_functions() {
    let p = engine().compile("deployment.status.availableReplicas > 0 && schema.spec.?name.orValue('') != '' && base64.encode(b'x') != ''").unwrap();
    let refs = p.references();
    assert_eq!(
        refs.variables.keys().collect::<Vec<_>>(),
        ["deployment", "schema"]
    );
    assert!(refs.variables["schema"].contains(&vec!["spec".to_string(), "name".to_string()]));
    assert!(refs.functions.contains("base64.encode"));
    let bound = engine().compile("schema.spec.tags.map(t, t + x)").unwrap();
    assert_eq!(
        bound.references().variables.keys().collect::<Vec<_>>(),
        ["schema", "x"]
    );
}

#[test]
fn missing_fields_are_pending_not_failures() {
    let err = eval_err("deployment.status.readyReplicas");
    assert!(err.is_pending(), "{err}");
    let err = eval_err("service.spec.clusterIP");
    assert!(err.is_pending(), "{err}");
    assert!(!eval_err("1 / 0").is_pending());
}

#[test]
fn hostile_expressions_are_stopped_before_they_run() {
    // Nested iteration over a million items in all: refused by the cost estimate.
    let nested = engine()
        .compile("lists.range(1000).map(x, lists.range(1000).map(y, x * y)).size() > 0")
        .unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(nested.eval(&scope()), Err(EvalError::Budget { .. })));
    assert!(started.elapsed() < std::time::Duration::from_millis(50));
    // A string doubled by nested bindings grows exponentially: refused too.
    let doubling = (0..12).fold(
        format!("'{}'", "abcdefghijklmnopqrstuvwxyz0123456789".repeat(8)),
        |inner, i| format!("cel.bind(v{i}, {inner}, v{i} + v{i})"),
    );
    assert!(matches!(
        engine().compile(&doubling).unwrap().eval(&scope()),
        Err(EvalError::Budget { .. })
    ));
    // A huge requested size is refused by the estimate; the function caps it too.
    assert!(matches!(
        eval_err("random.seededString(100000000, 'x')"),
        EvalError::Budget { .. }
    ));
    assert!(
        functions::seeded_string(100_000_000, "x")
            .unwrap_err()
            .contains("at most")
    );
    // Length and nesting limits hold at admission.
    assert!(matches!(
        compile_err(&"x".repeat(MAX_EXPRESSION_BYTES + 1)),
        CompileError::TooLong(_)
    ));
    assert!(matches!(
        compile_err(&format!("{}1{}", "(".repeat(100), ")".repeat(100))),
        CompileError::TooDeep(100)
    ));
    // A long operator chain has no brackets but a deep tree: refused before any recursive walk.
    let chain = vec!["1"; 4000].join(" + ");
    assert!(matches!(compile_err(&chain), CompileError::TooComplex(_)));
}

#[test]
fn a_modest_comprehension_fits_the_budget() {
    assert_eq!(eval("lists.range(100).map(x, x * 2).sum()"), json!(9900));
}

#[test]
fn two_variable_comprehensions_iterate_index_and_element_or_key_and_value() {
    for (src, want) in [
        ("schema.spec.tags.all(i, t, i < 3 && size(t) == 1)", json!(true)),
        ("schema.spec.tags.exists(i, t, i == 1 && t == 'a')", json!(true)),
        ("schema.spec.tags.exists(i, t, i == 0 && t == 'a')", json!(false)),
        ("schema.spec.tags.existsOne(i, t, t < 'c')", json!(false)),
        ("schema.spec.labels.existsOne(k, v, v == '2')", json!(true)),
        (
            "schema.spec.tags.transformList(i, t, t + string(i))",
            json!(["b0", "a1", "c2"]),
        ),
        (
            "schema.spec.tags.transformList(i, t, i > 0, t)",
            json!(["a", "c"]),
        ),
        (
            "schema.spec.labels.transformList(k, v, k + '=' + v)",
            json!(["a=2", "m=3", "z=1"]),
        ),
        (
            "schema.spec.labels.transformMap(k, v, int(v) * 10)",
            json!({"a": 20, "m": 30, "z": 10}),
        ),
        (
            "schema.spec.labels.transformMap(k, v, k != 'm', v + k)",
            json!({"a": "2a", "z": "1z"}),
        ),
        (
            "schema.spec.tags.transformMap(i, t, i)",
            json!({"0": 0, "1": 1, "2": 2}),
        ),
        (
            "schema.spec.labels.transformMapEntry(k, v, {v: k})",
            json!({"1": "z", "2": "a", "3": "m"}),
        ),
        (
            "schema.spec.labels.transformMapEntry(k, v, k == 'a', {'first': v})",
            json!({"first": "2"}),
        ),
        ("schema.spec.empty.transformList(i, t, t)", json!([])),
        (
            "schema.spec.tags.map(t, [t].transformList(i, u, u + t))",
            json!([["bb"], ["aa"], ["cc"]]),
        ),
    ] {
        assert_eq!(eval(src), want, "{src}");
    }
}

#[test]
fn a_two_variable_comprehension_refuses_bad_variables_and_duplicate_entries() {
    assert!(matches!(
        compile_err("schema.spec.tags.all(i, i, true)"),
        CompileError::Parse(m) if m.contains("two different variable names")
    ));
    assert!(matches!(
        compile_err("schema.spec.tags.all(1, t, true)"),
        CompileError::Parse(_)
    ));
    let e = eval_err("schema.spec.labels.transformMapEntry(k, v, {'same': v})");
    assert!(
        e.to_string().contains("key \"same\" already exists") || e.to_string().contains("already exists"),
        "{e}"
    );
    let e = eval_err("schema.spec.replicas.all(i, v, true)");
    assert!(e.to_string().contains("needs a list or a map"), "{e}");
}

#[test]
fn deep_merge_merges_nested_maps_and_takes_everything_else_from_the_argument() {
    assert_eq!(
        eval("{'a': {'x': 1, 'y': [1]}, 'b': 1}.deepMerge({'a': {'y': [2], 'z': 3}, 'c': 2})"),
        json!({"a": {"x": 1, "y": [2], "z": 3}, "b": 1, "c": 2})
    );
    assert_eq!(
        eval("{'a': {'x': 1}}.deepMerge({'a': 'flat'})"),
        json!({"a": "flat"})
    );
    assert_eq!(
        eval("{'a': 1}.merge({'a': 2})"),
        json!({"a": 2}),
        "merge is shallow and the argument wins"
    );
}
