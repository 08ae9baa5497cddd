//! The plumbing of kroxide's native CEL functions: arguments in, results out, and the size
//! caps every function that builds strings or lists obeys.

use std::sync::Arc;

use cel::{
    ExecutionError, Value,
    common::value::{CowVal, Val},
};

/// Longest string a kroxide function returns, in bytes.
pub(crate) const MAX_STRING: usize = 1 << 20;
/// Longest list a kroxide function returns.
pub(crate) const MAX_LIST: usize = 100_000;

pub(crate) type Out<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

pub(crate) fn vals(args: Vec<CowVal<'_, '_>>) -> Result<Vec<Value>, ExecutionError> {
    args.iter().map(|a| Value::try_from(a.as_ref())).collect()
}

pub(crate) fn ret<'b, 'v>(value: Value) -> Out<'b, 'v> {
    Ok(CowVal::Owned(Box::<dyn Val>::try_from(value)?))
}

pub(crate) fn err(function: &str, message: impl std::fmt::Display) -> ExecutionError {
    ExecutionError::function_error(function, message.to_string())
}

pub(crate) fn string(s: impl Into<String>) -> Value {
    Value::String(Arc::new(s.into()))
}

pub(crate) fn capped_string(function: &str, s: String) -> Result<Value, ExecutionError> {
    if s.len() > MAX_STRING {
        return Err(err(
            function,
            format!("result is {} bytes, over the limit of {MAX_STRING}", s.len()),
        ));
    }
    Ok(string(s))
}

pub(crate) fn capped_list(function: &str, items: Vec<Value>) -> Result<Value, ExecutionError> {
    if items.len() > MAX_LIST {
        return Err(err(
            function,
            format!("result has {} items, over the limit of {MAX_LIST}", items.len()),
        ));
    }
    Ok(Value::List(Arc::new(items)))
}

/// Defines an overload body over plain `Value`s.
macro_rules! value_fn {
    ($name:ident, |$args:ident| $body:expr) => {
        fn $name<'b, 'v>(args: Vec<cel::common::value::CowVal<'b, 'v>>) -> $crate::cel::native::Out<'b, 'v> {
            let $args = $crate::cel::native::vals(args)?;
            let result: Result<cel::Value, cel::ExecutionError> = $body;
            $crate::cel::native::ret(result?)
        }
    };
}

pub(crate) use value_fn;
