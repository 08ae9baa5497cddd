//! Decodes a `serde_json::Value` into a plugin's types, naming the path of the field at fault.
//!
//! `serde_path_to_error` does this by wrapping serde_json's own value deserializer, which costs a
//! second layer of generic code per decoded type; guests pay for every byte (the webapp example
//! must stay under 150 KB), so this deserializer *replaces* serde_json's instead of wrapping it.
//! Errors carry the path as segments, prepended as they bubble out of maps and sequences, and
//! numbers are printed with serde_json's formatter rather than `f64`'s `Display`.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, Expected, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor,
};
use serde_json::{Map, Number, Value};

/// A decoding error with the path (outermost first) of the field at fault.
#[derive(Debug)]
pub(crate) struct PathError {
    path: Vec<Segment>,
    message: String,
}

#[derive(Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

impl PathError {
    fn within(mut self, segment: Segment) -> Self {
        self.path.insert(0, segment);
        self
    }

    /// The path in Kubernetes' field syntax after `root`: `spec.ports[0].name`.
    pub(crate) fn path(&self, root: &str) -> String {
        let mut out = root.to_string();
        for segment in &self.path {
            match segment {
                Segment::Key(k) if out.is_empty() => out.push_str(k),
                Segment::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Segment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PathError {}

fn unexpected_text(unexp: &Unexpected<'_>) -> String {
    match *unexp {
        Unexpected::Float(v) => match Number::from_f64(v) {
            Some(n) => format!("floating point `{n}`"),
            None => "floating point".to_string(),
        },
        Unexpected::Unsigned(v) => format!("integer `{v}`"),
        Unexpected::Signed(v) => format!("integer `{v}`"),
        Unexpected::Str(s) => format!("string \"{s}\""),
        Unexpected::Bool(b) => format!("boolean `{b}`"),
        Unexpected::Char(c) => format!("character `{c}`"),
        Unexpected::Bytes(_) => "byte array".to_string(),
        Unexpected::Unit => "null".to_string(),
        Unexpected::Option => "Option value".to_string(),
        Unexpected::NewtypeStruct => "newtype struct".to_string(),
        Unexpected::Seq => "sequence".to_string(),
        Unexpected::Map => "map".to_string(),
        Unexpected::Enum => "enum".to_string(),
        Unexpected::UnitVariant => "unit variant".to_string(),
        Unexpected::NewtypeVariant => "newtype variant".to_string(),
        Unexpected::TupleVariant => "tuple variant".to_string(),
        Unexpected::StructVariant => "struct variant".to_string(),
        Unexpected::Other(other) => other.to_string(),
    }
}

impl de::Error for PathError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            path: Vec::new(),
            message: msg.to_string(),
        }
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::custom(format_args!(
            "invalid type: {}, expected {exp}",
            unexpected_text(&unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::custom(format_args!(
            "invalid value: {}, expected {exp}",
            unexpected_text(&unexp)
        ))
    }
}

/// Decodes `value` into `T`.
pub(crate) fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, PathError> {
    T::deserialize(ValueDe(value))
}

struct ValueDe<'a>(&'a Value);

fn visit_number<'de, V: Visitor<'de>>(n: &Number, visitor: V) -> Result<V::Value, PathError> {
    if let Some(u) = n.as_u64() {
        visitor.visit_u64(u)
    } else if let Some(i) = n.as_i64() {
        visitor.visit_i64(i)
    } else {
        visitor.visit_f64(n.as_f64().unwrap_or_default())
    }
}

impl<'de> Deserializer<'de> for ValueDe<'de> {
    type Error = PathError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => visit_number(n, visitor),
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(Seq {
                items: items.iter(),
                index: 0,
            }),
            Value::Object(map) => visitor.visit_map(Entries {
                iter: map.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, PathError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PathError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Object(map) if map.len() == 1 => {
                let (variant, value) = map.iter().next().expect("one entry");
                visitor
                    .visit_enum(Enum { variant, value })
                    .map_err(|e| e.within(Segment::Key(variant.clone())))
            }
            other => Err(de::Error::invalid_type(
                unexpected(other),
                &"a string or a map with one key",
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Unexpected::Unsigned(u),
            (_, Some(i)) => Unexpected::Signed(i),
            _ => Unexpected::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

struct Seq<'a> {
    items: std::slice::Iter<'a, Value>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = PathError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, PathError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(ValueDe(item))
            .map(Some)
            .map_err(|e| e.within(Segment::Index(index)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'a> {
    iter: serde_json::map::Iter<'a>,
    value: Option<(&'a String, &'a Value)>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = PathError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, PathError> {
        let Some((key, value)) = self.iter.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        seed.deserialize(key.as_str().into_deserializer())
            .map(Some)
            .map_err(|e: PathError| e.within(Segment::Key(key.clone())))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, PathError> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value without a key"))?;
        seed.deserialize(ValueDe(value))
            .map_err(|e| e.within(Segment::Key(key.clone())))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct Enum<'a> {
    variant: &'a String,
    value: &'a Value,
}

impl<'de> EnumAccess<'de> for Enum<'de> {
    type Error = PathError;
    type Variant = ValueDe<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, ValueDe<'de>), PathError> {
        let variant = seed.deserialize(self.variant.as_str().into_deserializer())?;
        Ok((variant, ValueDe(self.value)))
    }
}

impl<'de> VariantAccess<'de> for ValueDe<'de> {
    type Error = PathError;

    fn unit_variant(self) -> Result<(), PathError> {
        match self.0 {
            Value::Null => Ok(()),
            other => Err(de::Error::invalid_type(unexpected(other), &"unit variant")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, PathError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, PathError> {
        self.deserialize_any(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PathError> {
        self.deserialize_any(visitor)
    }
}

/// An empty object, for decoding absent sections.
pub(crate) fn empty_object() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Spec {
        replicas: u16,
        #[serde(default)]
        size: Option<Size>,
        #[serde(default)]
        ports: Vec<Port>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(default)]
        ratio: Option<f64>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Size {
        Small,
        Large,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Port {
        name: String,
        port: u16,
    }

    fn err(value: Value) -> String {
        let e = from_value::<Spec>(&value).unwrap_err();
        format!("{}: {}", e.path("spec"), e.message())
    }

    #[test]
    fn values_of_every_shape_decode() {
        let spec: Spec = from_value(&json!({
            "replicas": 3, "size": "large", "ports": [{"name": "http", "port": 80}],
            "labels": {"a": "b"}, "ratio": 0.5
        }))
        .unwrap();
        assert_eq!(spec.size, Some(Size::Large));
        assert_eq!(spec.ports[0].port, 80);
        assert_eq!(spec.ratio, Some(0.5));
    }

    #[test]
    fn a_wrong_type_is_named_by_its_path() {
        assert_eq!(
            err(json!({"replicas": "3"})),
            "spec.replicas: invalid type: string \"3\", expected u16"
        );
        assert_eq!(
            err(json!({"replicas": 1, "ports": [{"name": "a", "port": 1}, {"name": "b", "port": -1}]})),
            "spec.ports[1].port: invalid value: integer `-1`, expected u16"
        );
        assert_eq!(
            err(json!({"replicas": 1.5})),
            "spec.replicas: invalid type: floating point `1.5`, expected u16"
        );
    }

    #[test]
    fn unknown_variants_fields_and_missing_fields_are_named() {
        assert_eq!(
            err(json!({"replicas": 1, "size": "huge"})),
            "spec.size: unknown variant `huge`, expected `small` or `large`"
        );
        assert!(
            err(json!({"replicas": 1, "colour": "x"})).starts_with("spec.colour: unknown field `colour`")
        );
        assert_eq!(err(json!({})), "spec: missing field `replicas`");
    }
}
