//! Static type checking of expressions: the declarations of every function an expression may
//! call (CEL's standard library, the strings, lists, encoders and optionals extensions, the
//! Kubernetes libraries and kro's), checked with `cel-core`'s checker against the types of the
//! variables in scope.
//!
//! Only checking happens here; evaluation stays with the `cel` crate ([`super::Program`]). Values
//! the runtime holds as JSON strings (timestamps, durations, bytes in `format: byte` fields) are
//! typed `dyn` by the schemas, so the checker never refuses what the runtime evaluates.

use std::sync::{Arc, LazyLock};

use cel_core::{
    Ast, CompileError, Env, Expr, ProtoRegistry, Span, Spanned, SpannedExpr,
    parser::{ArgCount, Macro, MacroContext, MacroExpansion, MacroRegistry, MacroStyle, ParseOptions},
    types::{CelType, FunctionDecl, OverloadDecl},
};

pub(crate) use cel_core::types::CelType as Type;

/// The variables an expression may read and their types, with the registry that answers
/// the fields of the object types among them.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    env: Env,
}

/// Why an expression does not type-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckFailure {
    /// The checker's own parser refused it (the runtime's parser accepted it).
    Parse(String),
    /// A field read that the type of its object does not have.
    UndefinedField {
        /// The object's type name (a path such as `deployment.status`).
        owner: String,
        /// The field read.
        field: String,
    },
    /// Any other type error, in the checker's words.
    Other(String),
}

impl std::fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Parse(m) | Self::Other(m) => f.write_str(m),
            Self::UndefinedField { owner, field } => {
                write!(f, "undefined field '{field}' on type '{owner}'")
            }
        }
    }
}

static BASE: LazyLock<Env> = LazyLock::new(base_env);

impl Scope {
    /// A scope with no variables whose object types `registry` answers.
    pub(crate) fn new(registry: Arc<dyn ProtoRegistry>) -> Self {
        Self {
            env: BASE.clone().with_proto_registry(registry),
        }
    }

    /// A scope without object types (variables of CEL's own types only).
    #[cfg(test)]
    pub(crate) fn plain() -> Self {
        Self { env: BASE.clone() }
    }

    /// This scope with `name` bound to `ty` too (replacing a binding of that name).
    pub(crate) fn with(&self, name: &str, ty: Type) -> Self {
        Self {
            env: self.env.clone().with_variable(name, ty),
        }
    }

    /// Binds `name` to `ty` (replacing a binding of that name).
    pub(crate) fn bind(&mut self, name: &str, ty: Type) {
        self.env.add_variable(name, ty);
    }

    /// The type `source` evaluates to.
    ///
    /// # Errors
    /// The first type error the checker reports.
    pub(crate) fn check(&self, source: &str) -> Result<Type, CheckFailure> {
        match compile(&self.env, source) {
            Ok(ast) => Ok(ast.result_type().cloned().unwrap_or(CelType::Dyn)),
            Err(CompileError::Check(errors)) => {
                let first = errors.into_iter().next();
                Err(match first.map(|e| e.kind) {
                    Some(cel_core::CheckErrorKind::UndefinedField { type_name, field }) => {
                        CheckFailure::UndefinedField {
                            owner: type_name,
                            field,
                        }
                    }
                    Some(kind) => CheckFailure::Other(kind.to_string()),
                    None => CheckFailure::Other("does not type-check".to_string()),
                })
            }
            Err(CompileError::Parse(errors)) => Err(CheckFailure::Parse(
                errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
            Err(other) => Err(CheckFailure::Other(other.to_string())),
        }
    }

    /// Whether `name` is declared as a function (any overload).
    #[cfg(test)]
    pub(crate) fn declares(&self, name: &str) -> bool {
        self.env.functions().contains_key(name)
    }
}

/// A type as kro prints it (cel-go's spelling): `int`, `list(string)`, `map(string, dyn)`.
pub(crate) fn display(ty: &Type) -> String {
    match ty {
        CelType::List(e) => format!("list({})", display(e)),
        CelType::Map(k, v) => format!("map({}, {})", display(k), display(v)),
        CelType::Optional(t) => format!("optional_type({})", display(t)),
        CelType::Message(name) => format!("object({name})"),
        CelType::Abstract { name, .. } => name.to_string(),
        CelType::Double => "double".to_string(),
        CelType::Null => "null_type".to_string(),
        CelType::TypeVar(_) | CelType::TypeParam(_) | CelType::Error => "dyn".to_string(),
        other => other.display_name(),
    }
}

fn t(name: &str) -> Type {
    CelType::type_param(name)
}

fn list(e: Type) -> Type {
    CelType::list(e)
}

fn abstract_type(name: &str) -> Type {
    CelType::abstract_type(name, &[])
}

/// A global function with one overload per signature `(id, params, result)`.
fn function(name: &str, overloads: Vec<(&str, Vec<Type>, Type)>) -> FunctionDecl {
    FunctionDecl::new(name).with_overloads(overloads.into_iter().map(|(id, params, result)| {
        generic(
            OverloadDecl::function(id, params.clone(), result.clone()),
            &params,
            &result,
        )
    }))
}

/// A member function; the receiver is the first parameter.
fn method(name: &str, overloads: Vec<(&str, Vec<Type>, Type)>) -> FunctionDecl {
    FunctionDecl::new(name).with_overloads(overloads.into_iter().map(|(id, params, result)| {
        generic(
            OverloadDecl::method(id, params.clone(), result.clone()),
            &params,
            &result,
        )
    }))
}

/// Declares the type parameters an overload mentions.
fn generic(overload: OverloadDecl, params: &[Type], result: &Type) -> OverloadDecl {
    fn collect(ty: &Type, out: &mut Vec<String>) {
        match ty {
            CelType::TypeParam(n) if !out.iter().any(|o| o == n.as_ref()) => out.push(n.to_string()),
            CelType::List(e) | CelType::Optional(e) => collect(e, out),
            CelType::Map(k, v) => {
                collect(k, out);
                collect(v, out);
            }
            _ => {}
        }
    }
    let mut names = Vec::new();
    params
        .iter()
        .chain(std::iter::once(result))
        .for_each(|p| collect(p, &mut names));
    if names.is_empty() {
        overload
    } else {
        overload.with_type_params(names)
    }
}

/// Kubernetes' opaque types, as its CEL libraries name them.
const QUANTITY: &str = "kubernetes.Quantity";
const URL: &str = "kubernetes.URL";
const SEMVER: &str = "kubernetes.Semver";
const IP: &str = "net.IP";
const CIDR: &str = "net.CIDR";

/// Declarations beyond `cel-core`'s standard library and strings, encoders and optionals
/// extensions: the lists extension, the Kubernetes libraries and kro's libraries, with the
/// signatures the runtime registers.
pub(crate) fn library() -> Vec<FunctionDecl> {
    use CelType::{Bool, Bytes, Double, Dyn, Int, String};
    let (q, u, s, ip, cidr) = (
        abstract_type(QUANTITY),
        abstract_type(URL),
        abstract_type(SEMVER),
        abstract_type(IP),
        abstract_type(CIDR),
    );
    let lt = list(t("T"));
    let kv = CelType::map(t("K"), t("V"));
    vec![
        // Lists extension and Kubernetes' lists library.
        method(
            "slice",
            vec![("list_slice", vec![lt.clone(), Int, Int], lt.clone())],
        ),
        method(
            "flatten",
            vec![
                ("list_flatten", vec![list(lt.clone())], lt.clone()),
                ("list_flatten_int", vec![list(Dyn), Int], list(Dyn)),
            ],
        ),
        method("distinct", vec![("list_distinct", vec![lt.clone()], lt.clone())]),
        method("sort", vec![("list_sort", vec![lt.clone()], lt.clone())]),
        method(
            SORT_BY_KEYS,
            vec![(
                "list_sortByAssociatedKeys",
                vec![lt.clone(), list(t("U"))],
                lt.clone(),
            )],
        ),
        method("reverse", vec![("list_reverse", vec![lt.clone()], lt.clone())]),
        function("lists.range", vec![("lists_range_int", vec![Int], list(Int))]),
        method("sum", vec![("list_sum", vec![lt.clone()], t("T"))]),
        method("min", vec![("list_min", vec![lt.clone()], t("T"))]),
        method("max", vec![("list_max", vec![lt.clone()], t("T"))]),
        method("isSorted", vec![("list_isSorted", vec![lt.clone()], Bool)]),
        method("indexOf", vec![("list_indexOf", vec![lt.clone(), t("T")], Int)]),
        method(
            "lastIndexOf",
            vec![("list_lastIndexOf", vec![lt.clone(), t("T")], Int)],
        ),
        // kro's lists, maps, json, hash and random libraries.
        function(
            "lists.setAtIndex",
            vec![("lists_setAtIndex", vec![lt.clone(), Int, t("T")], lt.clone())],
        ),
        function(
            "lists.insertAtIndex",
            vec![("lists_insertAtIndex", vec![lt.clone(), Int, t("T")], lt.clone())],
        ),
        function(
            "lists.removeAtIndex",
            vec![("lists_removeAtIndex", vec![lt.clone(), Int], lt)],
        ),
        method("merge", vec![("map_merge_map", vec![kv.clone(), kv.clone()], kv)]),
        method(
            "deepMerge",
            vec![(
                "map_deepMerge_map",
                vec![CelType::map(t("K"), t("V")), CelType::map(t("K"), t("V"))],
                CelType::map(t("K"), t("V")),
            )],
        ),
        function("omit", vec![("omit", vec![], Dyn)]),
        function("json.marshal", vec![("json_marshal_dyn", vec![Dyn], String)]),
        function(
            "json.unmarshal",
            vec![("json_unmarshal_string", vec![String], Dyn)],
        ),
        function("hash.fnv64a", vec![("hash_fnv64a_string", vec![String], Bytes)]),
        function("hash.sha256", vec![("hash_sha256_string", vec![String], Bytes)]),
        function("hash.md5", vec![("hash_md5_string", vec![String], Bytes)]),
        // kro's custom status conditions: a condition is a map of four strings.
        function(
            "runtime.newCondition",
            vec![(
                "runtime_newCondition_map",
                vec![CelType::map(String, Dyn)],
                CelType::map(String, String),
            )],
        ),
        function(
            "runtime.condition",
            vec![(
                "runtime_condition_dyn_string",
                vec![Dyn, String],
                CelType::map(String, String),
            )],
        ),
        function(
            "random.seededString",
            vec![("random_seededString_int_string", vec![Int, String], String)],
        ),
        function(
            "random.seededInt",
            vec![("random_seededInt_int_int_string", vec![Int, Int, String], Int)],
        ),
        // Kubernetes' regex library.
        method("find", vec![("string_find_string", vec![String, String], String)]),
        method(
            "findAll",
            vec![
                ("string_findAll_string", vec![String, String], list(String)),
                (
                    "string_findAll_string_int",
                    vec![String, String, Int],
                    list(String),
                ),
            ],
        ),
        // Kubernetes' quantity library.
        function("quantity", vec![("quantity_string", vec![String], q.clone())]),
        function("isQuantity", vec![("isQuantity_string", vec![String], Bool)]),
        method("asInteger", vec![("quantity_asInteger", vec![q.clone()], Int)]),
        method(
            "asApproximateFloat",
            vec![("quantity_asApproximateFloat", vec![q.clone()], Double)],
        ),
        method("sign", vec![("quantity_sign", vec![q.clone()], Int)]),
        method("isInteger", vec![("quantity_isInteger", vec![q.clone()], Bool)]),
        method(
            "add",
            vec![
                ("quantity_add", vec![q.clone(), q.clone()], q.clone()),
                ("quantity_add_int", vec![q.clone(), Int], q.clone()),
            ],
        ),
        method(
            "sub",
            vec![
                ("quantity_sub", vec![q.clone(), q.clone()], q.clone()),
                ("quantity_sub_int", vec![q.clone(), Int], q.clone()),
            ],
        ),
        method(
            "isLessThan",
            vec![
                ("quantity_isLessThan", vec![q.clone(), q.clone()], Bool),
                ("semver_isLessThan", vec![s.clone(), s.clone()], Bool),
            ],
        ),
        method(
            "isGreaterThan",
            vec![
                ("quantity_isGreaterThan", vec![q.clone(), q.clone()], Bool),
                ("semver_isGreaterThan", vec![s.clone(), s.clone()], Bool),
            ],
        ),
        method(
            "compareTo",
            vec![
                ("quantity_compareTo", vec![q.clone(), q], Int),
                ("semver_compareTo", vec![s.clone(), s.clone()], Int),
            ],
        ),
        // Kubernetes' URL library.
        function("url", vec![("url_string", vec![String], u.clone())]),
        function("isURL", vec![("isURL_string", vec![String], Bool)]),
        method("getScheme", vec![("url_getScheme", vec![u.clone()], String)]),
        method("getHost", vec![("url_getHost", vec![u.clone()], String)]),
        method("getHostname", vec![("url_getHostname", vec![u.clone()], String)]),
        method("getPort", vec![("url_getPort", vec![u.clone()], String)]),
        method(
            "getEscapedPath",
            vec![("url_getEscapedPath", vec![u.clone()], String)],
        ),
        method(
            "getQuery",
            vec![("url_getQuery", vec![u], CelType::map(String, list(String)))],
        ),
        // Kubernetes' semver library.
        function("semver", vec![("semver_string", vec![String], s.clone())]),
        function("isSemver", vec![("isSemver_string", vec![String], Bool)]),
        method("major", vec![("semver_major", vec![s.clone()], Int)]),
        method("minor", vec![("semver_minor", vec![s.clone()], Int)]),
        method("patch", vec![("semver_patch", vec![s], Int)]),
        // Kubernetes' IP and CIDR libraries.
        function("ip", vec![("ip_string", vec![String], ip.clone())]),
        function("isIP", vec![("isIP_string", vec![String], Bool)]),
        function("cidr", vec![("cidr_string", vec![String], cidr.clone())]),
        method("family", vec![("ip_family", vec![ip.clone()], Int)]),
        method(
            "isUnspecified",
            vec![("ip_isUnspecified", vec![ip.clone()], Bool)],
        ),
        method("isLoopback", vec![("ip_isLoopback", vec![ip.clone()], Bool)]),
        method(
            "isLinkLocalMulticast",
            vec![("ip_isLinkLocalMulticast", vec![ip.clone()], Bool)],
        ),
        method(
            "isLinkLocalUnicast",
            vec![("ip_isLinkLocalUnicast", vec![ip.clone()], Bool)],
        ),
        method(
            "isGlobalUnicast",
            vec![("ip_isGlobalUnicast", vec![ip.clone()], Bool)],
        ),
        method(
            "containsIP",
            vec![
                ("cidr_containsIP_ip", vec![cidr.clone(), ip.clone()], Bool),
                ("cidr_containsIP_string", vec![cidr.clone(), String], Bool),
            ],
        ),
        method(
            "containsCIDR",
            vec![
                ("cidr_containsCIDR_cidr", vec![cidr.clone(), cidr.clone()], Bool),
                ("cidr_containsCIDR_string", vec![cidr.clone(), String], Bool),
            ],
        ),
        method("ip", vec![("cidr_ip", vec![cidr.clone()], ip.clone())]),
        method(
            "prefixLength",
            vec![("cidr_prefixLength", vec![cidr.clone()], Int)],
        ),
        method("masked", vec![("cidr_masked", vec![cidr.clone()], cidr.clone())]),
        function(
            "string",
            vec![
                ("string_ip", vec![ip], String),
                ("string_cidr", vec![cidr], String),
            ],
        ),
    ]
}

/// The binding `sortBy` evaluates its target into once, as cel-go names it.
const SORT_BY_INPUT: &str = "@__sortBy_input__";
/// The function `sortBy` expands to, as cel-go names it: a list sorted by a list of keys.
const SORT_BY_KEYS: &str = "@sortByAssociatedKeys";

/// cel-go's `list.sortBy(e, key)` (its lists extension, which kro enables; cel-core's parser
/// lacks it), expanded as cel-go does:
/// `cel.bind(@__sortBy_input__, list, @__sortBy_input__.@sortByAssociatedKeys(@__sortBy_input__.map(e, key)))`.
fn expand_sort_by(
    ctx: &mut MacroContext,
    span: Span,
    receiver: Option<SpannedExpr>,
    args: Vec<SpannedExpr>,
) -> MacroExpansion {
    let Some(receiver) = receiver else {
        return MacroExpansion::Error("sortBy() requires a receiver".to_string());
    };
    let input = |ctx: &mut MacroContext| {
        Spanned::new(
            ctx.next_id(),
            Expr::Ident(SORT_BY_INPUT.to_string()),
            span.clone(),
        )
    };
    let map = MacroRegistry::standard()
        .lookup("map", 2, true)
        .map(|m| m.expander)
        .expect("map is a standard macro");
    let target = input(ctx);
    let keys = match map(ctx, span.clone(), Some(target), args) {
        MacroExpansion::Expanded(e) => e,
        MacroExpansion::Error(m) => return MacroExpansion::Error(format!("sortBy(): {m}")),
    };
    let target = input(ctx);
    let member = Spanned::new(
        ctx.next_id(),
        Expr::Member {
            expr: Box::new(target),
            field: SORT_BY_KEYS.to_string(),
            optional: false,
        },
        span.clone(),
    );
    let call = Spanned::new(
        ctx.next_id(),
        Expr::Call {
            expr: Box::new(member),
            args: vec![keys],
        },
        span.clone(),
    );
    MacroExpansion::Expanded(Spanned::new(
        ctx.next_id(),
        Expr::Bind {
            var_name: SORT_BY_INPUT.to_string(),
            init: Box::new(receiver),
            body: Box::new(call),
        },
        span,
    ))
}

/// CEL's standard macros and `sortBy`.
static MACROS: LazyLock<MacroRegistry> = LazyLock::new(|| {
    let mut registry = MacroRegistry::standard();
    registry.register(Macro::new(
        "sortBy",
        MacroStyle::Receiver,
        ArgCount::Exact(2),
        expand_sort_by,
    ));
    registry
});

/// Parses with [`MACROS`] and checks in `env`.
fn compile(env: &Env, source: &str) -> Result<Ast, CompileError> {
    let parsed = cel_core::parser::parse_with_options(source, ParseOptions::with_macros(MACROS.clone()));
    if !parsed.errors.is_empty() {
        return Err(CompileError::Parse(parsed.errors));
    }
    let expr = parsed.ast.ok_or(CompileError::NoAst)?;
    let checked = env.check(&expr);
    if !checked.errors.is_empty() {
        return Err(CompileError::Check(checked.errors));
    }
    Ok(Ast::new_checked(expr, source, checked))
}

fn base_env() -> Env {
    Env::with_standard_library()
        .with_extension(cel_core::ext::string_extension())
        .with_extension(cel_core::ext::encoders_extension())
        .with_extension(cel_core::ext::optionals_extension())
        .with_extension(library())
}

#[cfg(test)]
mod tests;
