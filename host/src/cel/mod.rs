//! CEL as kro graphs use it: one environment with kro's libraries, expressions compiled once
//! per graph revision and checked at admission, and evaluation bounded by a cost budget.
//!
//! ```text
//! source -> length and nesting limits -> parse (macros expanded) -> rewrite (sorted map
//!   iteration) -> references (variables, paths, functions) -> unknown-function check = Program
//! eval: cost estimate from the actual inputs -> budget check -> evaluate -> JSON
//! ```

pub(crate) mod checker;
mod comprehensions;
pub(crate) mod convert;
pub(crate) mod functions;
pub(crate) mod inspect;
mod kubernetes;
mod native;
pub(crate) mod reads;
pub(crate) mod template;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, LazyLock},
};

use cel::{
    Context, Env, ExecutionError, Value,
    common::{
        ast::{ComprehensionExpr, Expr, IdedExpr, ListExpr, LiteralValue},
        value::{CowVal, Val},
    },
    context::VariableResolver,
    parser::Macro,
};
use serde_json::Value as Json;

pub(crate) use inspect::References;
pub(crate) use reads::Reads;

/// Longest expression accepted, in bytes.
pub(crate) const MAX_EXPRESSION_BYTES: usize = 16 * 1024;
/// Deepest bracket nesting accepted (the parser recurses on brackets).
pub(crate) const MAX_NESTING: usize = 32;
/// Deepest expression tree accepted: the evaluator recurses, and so do the checks after
/// parsing, so a long operator chain (`1+1+...`) must not exhaust a thread's stack.
pub(crate) const MAX_AST_DEPTH: usize = 48;
/// Work one evaluation may do, in the units of [`inspect::estimate_cost`]: about a million
/// basic steps, tens of milliseconds.
pub(crate) const COST_BUDGET: u64 = 1_000_000;

/// Function namespaces (a call `ns.f(...)` is a function, not a variable read).
const NAMESPACES: [&str; 9] = [
    "base64", "random", "hash", "json", "lists", "strings", "optional", "cel", "runtime",
];

/// Every function an expression may call (operators aside). Anything else is refused at
/// admission with kro's "uses unknown functions" message rather than failing at runtime.
const KNOWN_FUNCTIONS: &[&str] = &[
    // CEL standard library
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "dyn",
    "type",
    "duration",
    "timestamp",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
    // optional types
    "optional.of",
    "optional.ofNonZeroValue",
    "optional.none",
    "hasValue",
    "value",
    "orValue",
    "or",
    // strings extension
    "charAt",
    "indexOf",
    "lastIndexOf",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "substring",
    "trim",
    "join",
    "format",
    "strings.quote",
    "reverse",
    // lists extension
    "slice",
    "flatten",
    "distinct",
    "sort",
    "lists.range",
    // encoders
    "base64.encode",
    "base64.decode",
    // kro
    "random.seededString",
    "random.seededInt",
    "runtime.newCondition",
    "runtime.condition",
    "hash.fnv64a",
    "hash.sha256",
    "hash.md5",
    "json.marshal",
    "json.unmarshal",
    "merge",
    "deepMerge",
    "omit",
    "lists.setAtIndex",
    "lists.insertAtIndex",
    "lists.removeAtIndex",
    // Kubernetes libraries
    "sum",
    "min",
    "max",
    "isSorted",
    "find",
    "findAll",
    "quantity",
    "isQuantity",
    "url",
    "isURL",
    "semver",
    "isSemver",
    "ip",
    "isIP",
    "cidr",
];

/// Every function an expression may call, member functions of Kubernetes' types included.
#[cfg(test)]
pub(crate) fn known_functions() -> impl Iterator<Item = &'static str> {
    KNOWN_FUNCTIONS
        .iter()
        .copied()
        .chain(kubernetes::OPAQUE_MEMBERS.iter().map(|(name, _)| *name))
}

/// Whether an expression may call `omit()`, and what it is told when it may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Omit {
    /// A template field, with the `CELOmitFunction` feature gate on.
    Allowed,
    /// Refused, with this message.
    Refused(&'static str),
}

/// `omit()` with the `CELOmitFunction` feature gate off.
pub(crate) const OMIT_GATED: &str = "omit() requires the CELOmitFunction feature gate";
/// `omit()` where only template fields may use it.
pub(crate) const OMIT_NOT_HERE: &str =
    "omit() is only allowed in resource template fields (not in includeWhen, readyWhen, forEach or status)";

impl Omit {
    /// Where omit() is not allowed: the message, given whether the feature gate is on.
    pub(crate) fn refused(gate: bool) -> Self {
        Self::Refused(if gate { OMIT_NOT_HERE } else { OMIT_GATED })
    }

    /// In a template field: allowed when the feature gate is on.
    pub(crate) fn in_template(gate: bool) -> Self {
        if gate {
            Self::Allowed
        } else {
            Self::Refused(OMIT_GATED)
        }
    }
}

/// Why an expression was refused at admission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CompileError {
    /// Longer than [`MAX_EXPRESSION_BYTES`].
    #[error("expression is {0} bytes long, over the limit of {MAX_EXPRESSION_BYTES}")]
    TooLong(usize),
    /// Nested deeper than [`MAX_NESTING`].
    #[error("expression nests brackets {0} deep, over the limit of {MAX_NESTING}")]
    TooDeep(usize),
    /// Its tree is deeper than [`MAX_AST_DEPTH`].
    #[error(
        "expression is {0} operations deep, over the limit of {MAX_AST_DEPTH}; split it with cel.bind or simplify it"
    )]
    TooComplex(usize),
    /// Not valid CEL.
    #[error("failed to parse expression: {0}")]
    Parse(String),
    /// Calls functions kroxide does not have.
    #[error("uses unknown functions: [{}]", .0.join(" "))]
    UnknownFunctions(Vec<String>),
    /// Calls a function kro has behind a switch kroxide keeps off.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Why an evaluation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum EvalError {
    /// A field the expression reads is not there (yet): the caller may wait for data.
    #[error("no such key: {0}")]
    NoSuchKey(String),
    /// A variable the expression reads is not available (yet).
    #[error("undeclared reference to '{0}'")]
    Undeclared(String),
    /// The estimated work exceeds the budget: the expression is not run.
    #[error("expression would cost {cost} units, over the budget of {COST_BUDGET}")]
    Budget {
        /// The estimate.
        cost: u64,
    },
    /// Any other failure (type mismatch, function error, ...).
    #[error("{0}")]
    Failed(String),
    /// The result has no JSON form.
    #[error("result cannot be represented in JSON: {0}")]
    NotJson(String),
    /// The result has the wrong type for where it is used.
    #[error("expression must return {want}, got {got}")]
    WrongType {
        /// What was needed.
        want: &'static str,
        /// What came back (a JSON type).
        got: &'static str,
    },
}

impl EvalError {
    /// Whether the failure is missing data (a field or variable not there yet) rather than a
    /// broken expression.
    pub(crate) fn is_pending(&self) -> bool {
        matches!(self, Self::NoSuchKey(_) | Self::Undeclared(_))
    }
}

impl From<ExecutionError> for EvalError {
    fn from(e: ExecutionError) -> Self {
        match e {
            ExecutionError::NoSuchKey(k) => Self::NoSuchKey(k.to_string()),
            ExecutionError::UndeclaredReference(r) => Self::Undeclared(r.to_string()),
            other => Self::Failed(other.to_string()),
        }
    }
}

/// The JSON type name of a value, for messages.
pub(crate) fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(n) if n.is_i64() || n.is_u64() => "int",
        Json::Number(_) => "double",
        Json::String(_) => "string",
        Json::Array(_) => "list",
        Json::Object(_) => "map",
    }
}

/// The CEL environment with kro's libraries. One per process.
pub(crate) struct Engine {
    env: Arc<Env>,
    namespaces: BTreeSet<&'static str>,
    known: BTreeSet<&'static str>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("functions", &self.known.len())
            .finish()
    }
}

/// `cel.bind(name, init, expr)`: `expr` with `name` bound to `init`, as cel-go's macro.
fn bind_macro() -> Macro {
    Macro::receiver("bind", 3, |helper, target, args| {
        match target.as_ref().map(|t| &t.expr) {
            Some(Expr::Ident(ns)) if ns == "cel" => {}
            _ => return Ok(None),
        }
        let expr = args.pop().expect("three arguments");
        let init = args.pop().expect("three arguments");
        let var = args.pop().expect("three arguments");
        let Expr::Ident(name) = var.expr else {
            return Err(helper.new_error(var.id, "cel.bind() variable names must be simple identifiers"));
        };
        let comprehension = ComprehensionExpr {
            iter_range: helper.next_expr(Expr::List(ListExpr::new(Vec::new()))),
            iter_var: "#unused".to_string(),
            iter_var2: None,
            accu_var: name.clone(),
            accu_init: init,
            loop_cond: helper.next_expr(Expr::Literal(LiteralValue::Boolean(false.into()))),
            loop_step: helper.next_expr(Expr::Ident(name)),
            result: expr,
        };
        Ok(Some(
            helper.next_expr(Expr::Comprehension(Box::new(comprehension))),
        ))
    })
}

static ENGINE: LazyLock<Engine> =
    LazyLock::new(|| Engine::new().expect("the CEL environment declares cleanly"));

/// The process-wide engine.
pub(crate) fn engine() -> &'static Engine {
    &ENGINE
}

impl Engine {
    fn new() -> Result<Self, cel::DeclarationError> {
        let mut env = Env::stdlib();
        env.add_extension(cel::extensions::strings)?;
        env.add_extension(cel::extensions::lists)?;
        env.add_extension(cel::extensions::encoders)?;
        env.add_macro(bind_macro())?;
        comprehensions::register(&mut env)?;
        functions::register(&mut env)?;
        Ok(Self {
            env: Arc::new(env),
            namespaces: NAMESPACES.into_iter().collect(),
            known: KNOWN_FUNCTIONS
                .iter()
                .copied()
                .chain(kubernetes::OPAQUE_MEMBERS.iter().map(|(name, _)| *name))
                .collect(),
        })
    }

    /// Compiles an expression (the CEL source inside `${...}`).
    ///
    /// # Errors
    /// Too long, too deep, not valid CEL, or calling unknown functions.
    pub(crate) fn compile(&self, source: &str) -> Result<Program, CompileError> {
        self.compile_with(source, Omit::Refused(OMIT_GATED))
    }

    /// Compiles an expression, `omit()` allowed or refused as `omit` says.
    ///
    /// # Errors
    /// As [`Engine::compile`].
    pub(crate) fn compile_with(&self, source: &str, omit: Omit) -> Result<Program, CompileError> {
        if source.len() > MAX_EXPRESSION_BYTES {
            return Err(CompileError::TooLong(source.len()));
        }
        let depth = nesting(source);
        if depth > MAX_NESTING {
            return Err(CompileError::TooDeep(depth));
        }
        let mut ast = self.parse(source)?;
        let tree_depth = inspect::depth(&ast);
        if tree_depth > MAX_AST_DEPTH {
            return Err(CompileError::TooComplex(tree_depth));
        }
        let mut next_id = inspect::max_id(&ast);
        inspect::rewrite(&mut ast, &mut next_id);
        let references = inspect::references(&ast, &self.namespaces);
        if let Omit::Refused(message) = omit
            && references.functions.iter().any(|f| f == functions::OMIT)
        {
            return Err(CompileError::Unsupported(message));
        }
        let unknown: Vec<String> = references
            .functions
            .iter()
            .filter(|f| {
                !self.known.contains(f.as_str())
                    && f.as_str() != functions::ITER_HELPER
                    && !comprehensions::HELPERS.contains(&f.as_str())
            })
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(CompileError::UnknownFunctions(unknown));
        }
        Ok(Program {
            source: source.to_string(),
            ast: Arc::new(ast),
            references,
        })
    }
}

impl Engine {
    /// Parses on a dedicated thread with a large stack: the parser recurses deeply per
    /// nesting level, more than a runtime worker's stack allows.
    fn parse(&self, source: &str) -> Result<IdedExpr, CompileError> {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("kroxide-cel-parse".to_string())
                .stack_size(PARSER_STACK)
                .spawn_scoped(scope, || {
                    self.env
                        .parser()
                        .parse(source)
                        .map_err(|e| CompileError::Parse(e.to_string().trim().to_string()))
                })
                .map_err(|e| CompileError::Parse(format!("cannot start the parser thread: {e}")))?
                .join()
                .map_err(|_| CompileError::Parse("the parser panicked".to_string()))?
        })
    }
}

/// Stack of the parser thread.
const PARSER_STACK: usize = 64 << 20;

/// Deepest nesting of brackets outside string literals.
fn nesting(source: &str) -> usize {
    let (mut depth, mut max, mut quote) = (0usize, 0usize, None::<char>);
    let mut escaped = false;
    for c in source.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    max
}

/// What an expression yields, as far as its shape tells without types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeHint {
    /// A boolean (comparisons, logic, `has`, `exists`, ...).
    Bool,
    /// An integer.
    Int,
    /// A double.
    Double,
    /// A string.
    String,
    /// A list.
    List,
    /// A map.
    Map,
    /// Cannot tell (a field read, a function of unknown type).
    Unknown,
}

fn hint(e: &IdedExpr) -> TypeHint {
    use cel::common::ast::LiteralValue as L;
    match &e.expr {
        Expr::Literal(l) => match l {
            L::Boolean(_) => TypeHint::Bool,
            L::Int(_) | L::UInt(_) => TypeHint::Int,
            L::Double(_) => TypeHint::Double,
            L::String(_) => TypeHint::String,
            L::Bytes(_) | L::Null => TypeHint::Unknown,
        },
        Expr::List(_) => TypeHint::List,
        Expr::Map(_) => TypeHint::Map,
        Expr::Select(s) if s.test => TypeHint::Bool,
        Expr::Comprehension(c) if matches!(&c.iter_range.expr, Expr::List(l) if l.elements.is_empty()) => {
            hint(&c.result)
        }
        Expr::Comprehension(c) => match &c.accu_init.expr {
            Expr::Literal(LiteralValue::Boolean(_)) => TypeHint::Bool,
            Expr::List(_) => TypeHint::List,
            _ => hint(&c.result),
        },
        Expr::Call(call) => match call.func_name.as_str() {
            "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" | "_&&_" | "_||_" | "!_" | "@in"
            | "matches" | "startsWith" | "endsWith" | "contains" | "bool" | "isSorted" | "isQuantity"
            | "isURL" | "isIP" | "isSemver" => TypeHint::Bool,
            "size" | "int" | "indexOf" | "lastIndexOf" => TypeHint::Int,
            "double" => TypeHint::Double,
            "string" | "format" | "join" | "lowerAscii" | "upperAscii" | "replace" | "trim" | "substring"
            | "charAt" | "quote" | "marshal" | "encode" | "seededString" => TypeHint::String,
            "split" | "map" | "filter" | "sort" | "slice" | "flatten" | "distinct" | "findAll" | "range" => {
                TypeHint::List
            }
            "merge" => TypeHint::Map,
            "_+_" => {
                let sides: Vec<TypeHint> = call.args.iter().map(hint).collect();
                if sides.contains(&TypeHint::String) {
                    TypeHint::String
                } else if sides.contains(&TypeHint::List) {
                    TypeHint::List
                } else if sides.iter().all(|h| *h == TypeHint::Int) {
                    TypeHint::Int
                } else {
                    TypeHint::Unknown
                }
            }
            "_?_:_" if call.args.len() == 3 => {
                let (a, b) = (hint(&call.args[1]), hint(&call.args[2]));
                if a == b { a } else { TypeHint::Unknown }
            }
            _ => TypeHint::Unknown,
        },
        _ => TypeHint::Unknown,
    }
}

/// A compiled expression. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    source: String,
    ast: Arc<IdedExpr>,
    references: References,
}

/// The variables an evaluation sees, as JSON and as CEL values. Each value is converted at
/// most once, when an evaluation first reads it (a bound object no expression reads is never
/// converted), and lent to every evaluation by reference (no per-evaluation copy). A scope
/// [reading](Scope::reading) known paths converts only the fields on them.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    json: HashMap<String, Arc<Json>>,
    values: HashMap<String, std::sync::OnceLock<Box<dyn Val>>>,
    reads: Option<Arc<Reads>>,
    largest: u64,
}

impl VariableResolver for Scope {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let json = self.json.get(variable)?;
        let value = self.values.get(variable)?.get_or_init(|| {
            match self.reads.as_deref().and_then(|r| r.get(variable)) {
                Some(projection) => projection.to_val(json),
                None => convert::to_val(json),
            }
        });
        Some(CowVal::Borrowed(value.as_ref()))
    }
}

impl Scope {
    /// An empty scope.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An empty scope for evaluating only programs whose reads are in `reads`: a bound value
    /// is converted to CEL only as far as they read it.
    pub(crate) fn reading(reads: Arc<Reads>) -> Self {
        Self {
            reads: Some(reads),
            ..Self::default()
        }
    }

    /// Binds `name` to `value`, replacing any previous binding.
    pub(crate) fn set(&mut self, name: &str, value: impl Into<Arc<Json>>) {
        let value = value.into();
        self.largest = self.largest.max(inspect::max_size(&value));
        self.values.insert(name.to_string(), std::sync::OnceLock::new());
        self.json.insert(name.to_string(), value);
    }

    /// Every binding, as JSON (shared, not copied).
    pub(crate) fn bindings(&self) -> Vec<(String, Arc<Json>)> {
        self.json.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Removes a binding.
    pub(crate) fn remove(&mut self, name: &str) {
        self.values.remove(name);
        self.json.remove(name);
    }
}

impl Program {
    /// The source, as written inside `${...}`.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// What the expression yields, as far as its shape tells.
    pub(crate) fn result_hint(&self) -> TypeHint {
        hint(&self.ast)
    }

    /// What the expression refers to.
    pub(crate) fn references(&self) -> &References {
        &self.references
    }

    /// The work evaluating this in `scope` would take (see [`inspect::estimate_cost`]).
    pub(crate) fn cost(&self, scope: &Scope) -> u64 {
        inspect::estimate_cost(
            &self.ast,
            &inspect::CostInputs {
                variables: &scope.json,
                largest: scope.largest,
            },
        )
    }

    /// Evaluates in `scope` and returns the result as JSON.
    ///
    /// # Errors
    /// [`EvalError::Budget`] before running when the estimate is over budget; missing data
    /// ([`EvalError::is_pending`]); any other evaluation failure; a result JSON cannot hold.
    pub(crate) fn eval(&self, scope: &Scope) -> Result<Json, EvalError> {
        let cost = self.cost(scope);
        if cost > COST_BUDGET {
            return Err(EvalError::Budget { cost });
        }
        let mut ctx = Context::with_env(engine().env.clone());
        ctx.set_variable_resolver(scope);
        let value = Value::resolve(&self.ast, &ctx)?;
        convert::to_json(&value).map_err(EvalError::NotJson)
    }

    /// Evaluates to a boolean.
    ///
    /// # Errors
    /// As [`Program::eval`], or [`EvalError::WrongType`].
    pub(crate) fn eval_bool(&self, scope: &Scope) -> Result<bool, EvalError> {
        match self.eval(scope)? {
            Json::Bool(b) => Ok(b),
            other => Err(EvalError::WrongType {
                want: "bool",
                got: json_type(&other),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
