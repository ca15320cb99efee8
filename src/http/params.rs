//! Request parameters: form or JSON bodies (and query strings) into one `Params`, under
//! RFC 6749 §3.1's rules.

use std::collections::HashMap;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::MAX_BODY;

/// Why a request's parameters could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamsError {
    TooLarge,
    UnsupportedContentType,
    Malformed(&'static str),
    Repeated(String),
}

impl ParamsError {
    pub fn description(&self) -> String {
        match self {
            ParamsError::TooLarge => format!("request body is larger than {MAX_BODY} bytes"),
            ParamsError::UnsupportedContentType => {
                "Content-Type must be application/x-www-form-urlencoded or application/json".into()
            }
            ParamsError::Malformed(what) => format!("malformed request: {what}"),
            // RFC 6749 §3.1/§3.2: parameters MUST NOT be included more than once.
            ParamsError::Repeated(name) => format!("parameter `{name}` is repeated"),
        }
    }
}

/// Request parameters after the RFC 6749 §3.1 rules: empty values count as absent;
/// unknown ones are simply never asked for; repeats were already refused.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(super) fn from_pairs(pairs: Vec<(String, String)>) -> Result<Params, ParamsError> {
        let mut map = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            if map.contains_key(&name) {
                return Err(ParamsError::Repeated(truncate_for_message(&name)));
            }
            map.insert(name, value);
        }
        Ok(Params(map))
    }
}

fn truncate_for_message(s: &str) -> String {
    s.chars().take(40).collect()
}

pub(super) fn parse_form(body: &[u8]) -> Result<Params, ParamsError> {
    if std::str::from_utf8(body).is_err() {
        return Err(ParamsError::Malformed("body is not UTF-8"));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| ParamsError::Malformed("not a valid form body"))?;
    Params::from_pairs(pairs)
}

pub(super) fn parse_json(body: &[u8]) -> Result<Params, ParamsError> {
    let JsonPairs(pairs) = serde_json::from_slice(body)
        .map_err(|_| ParamsError::Malformed("body is not a JSON object"))?;
    let mut strings = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let value = match value {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                return Err(ParamsError::Malformed("JSON parameters must be strings"))
            }
        };
        strings.push((name, value));
    }
    Params::from_pairs(strings)
}

/// A JSON object's members in order, keeping duplicates so they can be refused
/// (`serde_json::Map` would silently keep the last one).
struct JsonPairs(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for JsonPairs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = JsonPairs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonPairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, serde_json::Value>()? {
                    pairs.push(pair);
                }
                Ok(JsonPairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor)
    }
}
