use super::*;

fn scope() -> Scope {
    let mut s = Scope::plain();
    for (name, ty) in [
        ("s", CelType::String),
        ("i", CelType::Int),
        ("d", CelType::Double),
        ("b", CelType::Bool),
        ("ls", CelType::list(CelType::String)),
        ("li", CelType::list(CelType::Int)),
        ("m", CelType::map(CelType::String, CelType::String)),
        ("x", CelType::Dyn),
    ] {
        s.bind(name, ty);
    }
    s
}

/// One call of every function of kro's libraries and the Kubernetes libraries, with the type
/// the checker gives it.
const SIGNATURES: &[(&str, &str)] = &[
    // kro: random, hash, json, maps, lists
    ("ls.sortBy(e, size(e))", "list(string)"),
    ("ls.sortBy(e, -size(e)).map(e, e + 'x')", "list(string)"),
    ("random.seededString(8, s)", "string"),
    ("random.seededInt(1, 10, s)", "int"),
    ("hash.fnv64a(s)", "bytes"),
    ("hash.sha256(s)", "bytes"),
    ("hash.md5(s)", "bytes"),
    ("json.marshal(m)", "string"),
    ("json.unmarshal(s)", "dyn"),
    ("m.merge({'a': 'b'})", "map(string, string)"),
    ("m.deepMerge({'a': 'b'})", "map(string, string)"),
    ("ls.transformList(i, v, v + string(i))", "list(string)"),
    ("m.transformMap(k, v, size(v))", "map(string, int)"),
    ("m.all(k, v, k != v)", "bool"),
    ("lists.setAtIndex(ls, 0, s)", "list(string)"),
    ("lists.insertAtIndex(li, 0, 1)", "list(int)"),
    ("lists.removeAtIndex(ls, 0)", "list(string)"),
    // CEL lists extension and Kubernetes lists
    ("ls.slice(0, 1)", "list(string)"),
    ("[ls, ls].flatten()", "list(string)"),
    ("ls.distinct()", "list(string)"),
    ("li.sort()", "list(int)"),
    ("li.reverse()", "list(int)"),
    ("lists.range(3)", "list(int)"),
    ("li.sum()", "int"),
    ("li.min()", "int"),
    ("li.max()", "int"),
    ("li.isSorted()", "bool"),
    ("ls.indexOf(s)", "int"),
    ("ls.lastIndexOf(s)", "int"),
    // strings
    ("s.charAt(0)", "string"),
    ("s.indexOf('a')", "int"),
    ("s.lastIndexOf('a')", "int"),
    ("s.lowerAscii()", "string"),
    ("s.upperAscii()", "string"),
    ("s.replace('a', 'b')", "string"),
    ("s.split(',')", "list(string)"),
    ("s.substring(1)", "string"),
    ("s.trim()", "string"),
    ("ls.join(',')", "string"),
    ("'%s'.format([s])", "string"),
    ("strings.quote(s)", "string"),
    ("s.reverse()", "string"),
    ("s.matches('^a')", "bool"),
    ("s.find('[a-z]+')", "string"),
    ("s.findAll('[a-z]')", "list(string)"),
    ("s.findAll('[a-z]', 2)", "list(string)"),
    // encoders
    ("base64.encode(bytes(s))", "string"),
    ("base64.decode(s)", "bytes"),
    // Kubernetes: quantity, url, semver, ip, cidr
    ("quantity(s)", "kubernetes.Quantity"),
    ("isQuantity(s)", "bool"),
    ("quantity(s).add(quantity(s))", "kubernetes.Quantity"),
    ("quantity(s).sub(1)", "kubernetes.Quantity"),
    ("quantity(s).isLessThan(quantity(s))", "bool"),
    ("quantity(s).compareTo(quantity(s))", "int"),
    ("quantity(s).asInteger()", "int"),
    ("quantity(s).asApproximateFloat()", "double"),
    ("quantity(s).sign()", "int"),
    ("quantity(s).isInteger()", "bool"),
    ("url(s)", "kubernetes.URL"),
    ("isURL(s)", "bool"),
    ("url(s).getScheme()", "string"),
    ("url(s).getHostname()", "string"),
    ("url(s).getPort()", "string"),
    ("url(s).getEscapedPath()", "string"),
    ("url(s).getQuery()", "map(string, list(string))"),
    ("semver(s)", "kubernetes.Semver"),
    ("isSemver(s)", "bool"),
    ("semver(s).major()", "int"),
    ("semver(s).isGreaterThan(semver(s))", "bool"),
    ("ip(s)", "net.IP"),
    ("isIP(s)", "bool"),
    ("ip(s).family()", "int"),
    ("ip(s).isLoopback()", "bool"),
    ("cidr(s)", "net.CIDR"),
    ("cidr(s).containsIP(s)", "bool"),
    ("cidr(s).containsCIDR(cidr(s))", "bool"),
    ("cidr(s).ip()", "net.IP"),
    ("cidr(s).prefixLength()", "int"),
    ("cidr(s).masked()", "net.CIDR"),
    ("string(ip(s))", "string"),
    // optionals, bind, time, members on dyn
    ("m.?a.orValue('b')", "string"),
    ("optional.of(s).hasValue()", "bool"),
    ("cel.bind(v, i, v + 1)", "int"),
    ("timestamp(s).getFullYear()", "int"),
    ("duration(s)", "duration"),
    ("x.asInteger()", "int"),
];

#[test]
fn every_library_function_has_its_signature() {
    let scope = scope();
    for (expr, want) in SIGNATURES {
        let ty = scope.check(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(display(&ty), *want, "{expr}");
    }
}

#[test]
fn library_functions_refuse_arguments_of_the_wrong_type() {
    let scope = scope();
    for expr in [
        "random.seededString(s, s)",
        "hash.md5(i)",
        "lists.range(s)",
        "quantity(i)",
        "url(i)",
        "cidr(s).containsIP(1)",
        "ls.join(1)",
        "m.merge(ls)",
    ] {
        let err = scope.check(expr).expect_err(expr);
        assert!(err.to_string().contains("no matching overload"), "{expr}: {err}");
    }
}

#[test]
fn every_function_the_runtime_knows_is_declared_for_the_checker() {
    let scope = scope();
    for name in crate::cel::known_functions() {
        assert!(scope.declares(name), "{name} is not declared for the checker");
    }
}

#[test]
fn sort_by_binds_its_variable_and_checks_its_key() {
    let scope = scope();
    let err = scope
        .check("ls.sortBy(e, e.missing)")
        .expect_err("a string has no fields");
    assert!(!err.to_string().is_empty());
    let err = scope
        .check("ls.sortBy(1, e)")
        .expect_err("the variable must be a name");
    assert!(err.to_string().contains("sortBy"), "{err}");
}
