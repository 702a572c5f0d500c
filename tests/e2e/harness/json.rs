//! JSON for the tests' ptproxy configs: `serde_json` does the parsing and printing, this
//! wrapper adds editing by dotted path ("tls.cert") so that tests override fragments of a
//! generated config. Objects print with sorted keys (serde_json's map), which no config reader
//! minds.
#![allow(dead_code)]

use std::fmt;

use serde_json::{Map, Value};

/// A JSON value, edited by dotted path.
#[derive(Clone, Debug, PartialEq)]
pub struct Json(pub Value);

impl Json {
    /// Parses a complete JSON text.
    pub fn parse(text: &str) -> Result<Json, String> {
        serde_json::from_str(text)
            .map(Json)
            .map_err(|e| e.to_string())
    }

    /// Parses, panicking with a useful message (for literals in tests).
    pub fn must(text: &str) -> Json {
        Json::parse(text).unwrap_or_else(|e| panic!("bad JSON literal {text:?}: {e}"))
    }

    /// An empty object.
    pub fn object() -> Json {
        Json(Value::Object(Map::new()))
    }

    pub fn array(items: Vec<Json>) -> Json {
        Json(Value::Array(items.into_iter().map(|j| j.0).collect()))
    }

    pub fn bool(b: bool) -> Json {
        Json(Value::Bool(b))
    }

    pub fn str(s: impl Into<String>) -> Json {
        Json(Value::String(s.into()))
    }

    /// A number from its literal text (`5`, `-1.5e3`); panics on anything else.
    pub fn num(n: impl fmt::Display) -> Json {
        let text = n.to_string();
        let number: serde_json::Number = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not a JSON number {text:?}: {e}"));
        Json(Value::Number(number))
    }

    pub fn as_str(&self) -> Option<&str> {
        self.0.as_str()
    }

    pub fn as_i64(&self) -> Option<i64> {
        self.0.as_i64()
    }

    pub fn as_bool(&self) -> Option<bool> {
        self.0.as_bool()
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        self.0.as_array()
    }

    pub fn as_object(&self) -> Option<&Map<String, Value>> {
        self.0.as_object()
    }

    /// Value at a dotted path ("tls.cert"); `""` is the value itself.
    pub fn get(&self, path: &str) -> Option<&Value> {
        segments(path).try_fold(&self.0, |cur, seg| cur.as_object()?.get(seg))
    }

    /// Sets the value at a dotted path, creating (or replacing non-object) intermediate
    /// objects as needed.
    pub fn set(&mut self, path: &str, v: Json) {
        let mut cur = &mut self.0;
        for seg in segments(path) {
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
            let Value::Object(map) = cur else {
                unreachable!("made an object just above")
            };
            cur = map.entry(seg).or_insert(Value::Null);
        }
        *cur = v.0;
    }

    /// Removes the value at a dotted path, returning it.
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        let segs: Vec<&str> = segments(path).collect();
        let (last, parents) = segs.split_last()?;
        let mut cur = &mut self.0;
        for seg in parents {
            cur = cur.as_object_mut()?.get_mut(*seg)?;
        }
        cur.as_object_mut()?.remove(*last)
    }

    /// Pretty (2-space indented) text.
    pub fn pretty(&self) -> String {
        serde_json::to_string_pretty(&self.0).expect("a JSON value always prints")
    }
}

impl fmt::Display for Json {
    /// Compact text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_string())
    }
}

/// The non-empty segments of a dotted path.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('.').filter(|s| !s.is_empty())
}
