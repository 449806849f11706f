//! Reading an action's parameters: present or missing, the right type, in
//! range. The query protocol sends every scalar as text; JSON sends numbers
//! and booleans; both are accepted wherever the API takes them.

use serde_json::{Map, Value};

use crate::error::SqsError;

pub struct Input<'a>(pub &'a Map<String, Value>);

impl<'a> Input<'a> {
    pub fn opt_str(&self, name: &str) -> Result<Option<&'a str>, SqsError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(SqsError::invalid_parameter(&format!(
                "{name} must be a string."
            ))),
        }
    }

    pub fn str(&self, name: &str) -> Result<&'a str, SqsError> {
        self.opt_str(name)?
            .ok_or_else(|| SqsError::missing_parameter(name))
    }

    /// An integer in `lo..=hi`.
    pub fn opt_int(&self, name: &str, lo: i64, hi: i64) -> Result<Option<i64>, SqsError> {
        let v = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        match v {
            Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            Some(n) => Err(crate::wording::invalid_parameter_value::out_of_range(
                name, n, lo, hi,
            )),
            None => Err(SqsError::invalid_parameter(&format!(
                "Value for parameter {name} is invalid. It must be an integer."
            ))),
        }
    }

    /// A map of string to string (`Attributes`, `Tags`).
    pub fn string_map(&self, name: &str) -> Result<Vec<(&'a str, String)>, SqsError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.as_str(), s.clone())),
                    Value::Number(n) => Ok((k.as_str(), n.to_string())),
                    Value::Bool(b) => Ok((k.as_str(), b.to_string())),
                    _ => Err(SqsError::invalid_parameter(&format!(
                        "{name}.{k} must be a string."
                    ))),
                })
                .collect(),
            Some(_) => Err(SqsError::invalid_parameter(&format!(
                "{name} must be a map."
            ))),
        }
    }

    pub fn object(&self, name: &str) -> Result<Option<&'a Map<String, Value>>, SqsError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(SqsError::invalid_parameter(&format!(
                "{name} must be a map."
            ))),
        }
    }

    /// A list of strings (`AttributeNames`, `TagKeys`).
    pub fn string_list(&self, name: &str) -> Result<Vec<&'a str>, SqsError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            // The query protocol sends an empty list as `Name=`.
            Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        SqsError::invalid_parameter(&format!("{name} must hold strings."))
                    })
                })
                .collect(),
            Some(_) => Err(SqsError::invalid_parameter(&format!(
                "{name} must be a list."
            ))),
        }
    }

    /// A list of objects (batch `Entries`).
    pub fn object_list(&self, name: &str) -> Result<Vec<&'a Map<String, Value>>, SqsError> {
        match self.0.get(name) {
            // The query protocol sends an empty list as `Name=`.
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_object().ok_or_else(|| {
                        SqsError::invalid_parameter(&format!("{name} must hold objects."))
                    })
                })
                .collect(),
            Some(_) => Err(SqsError::invalid_parameter(&format!(
                "{name} must be a list."
            ))),
        }
    }
}
