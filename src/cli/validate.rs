//! The API server's checks of a MultiRegionApp, run offline: `plan` is a
//! CI gate only if it refuses what `kubectl apply` would refuse.
//!
//! The rules are read from the CRD the operator generates (the same
//! `openAPIV3Schema` that `crds/` holds), not written a second time: the
//! bounds of the schema (minimum, maximum, lengths, item counts, enums,
//! required fields) and every `x-kubernetes-validations` CEL rule,
//! evaluated on the spec after serde applied the defaults (as the API
//! server defaults before it validates). Kubernetes' `isSorted()` list
//! function is provided; transition rules (`oldSelf`) do not apply to a
//! new object and are skipped.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use cel::extractors::This;
use kube::CustomResourceExt;
use serde_json::Value;

use crate::api::MultiRegionApp;

/// One refusal: the field and why, as the API server words it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What the API server would refuse in `app` (its spec, defaulted).
pub fn refusals(app: &MultiRegionApp) -> Result<Vec<Invalid>> {
    let crd = MultiRegionApp::crd();
    let version = crd
        .spec
        .versions
        .first()
        .context("the CRD has no version")?;
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .context("the CRD has no schema")?;
    let schema = serde_json::to_value(schema)?;
    let spec = serde_json::to_value(&app.spec)?;
    let mut found = Vec::new();
    check(&schema["properties"]["spec"], &spec, "spec", &mut found);
    Ok(found)
}

/// Checks `value` against `schema` at `path`, then its children.
fn check(schema: &Value, value: &Value, path: &str, found: &mut Vec<Invalid>) {
    // An unset optional field serialized as null: the API server would
    // not have it, so nothing of it is checked.
    if value.is_null() {
        return;
    }
    let value = as_schema_type(schema, value);
    bounds(schema, &value, path, found);
    rules(schema, &value, path, found);
    match &value {
        Value::Object(fields) => {
            for name in required(schema) {
                if !fields.contains_key(name) {
                    found.push(invalid(&format!("{path}.{name}"), "Required value"));
                }
            }
            for (name, child) in fields {
                if let Some(sub) = schema["properties"].get(name) {
                    check(sub, child, &format!("{path}.{name}"), found);
                } else if schema["additionalProperties"].is_object() {
                    check(
                        &schema["additionalProperties"],
                        child,
                        &format!("{path}[{name}]"),
                        found,
                    );
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter().enumerate() {
                check(&schema["items"], item, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

fn required(schema: &Value) -> impl Iterator<Item = &str> {
    schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// A whole number where the schema says `number` is a double to CEL (as
/// the API server reads it).
fn as_schema_type(schema: &Value, value: &Value) -> Value {
    match (schema["type"].as_str(), value.as_f64()) {
        (Some("number"), Some(n)) if value.is_i64() || value.is_u64() => {
            serde_json::Number::from_f64(n).map_or(value.clone(), Value::Number)
        }
        _ => value.clone(),
    }
}

/// The schema's bounds: numbers, lengths, counts, enums.
fn bounds(schema: &Value, value: &Value, path: &str, found: &mut Vec<Invalid>) {
    let mut refuse = |message: String| found.push(invalid(path, &message));
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64().filter(|min| n < *min) {
            refuse(format!(
                "Invalid value: {value}: should be greater than or equal to {min}"
            ));
        }
        if let Some(max) = schema["maximum"].as_f64().filter(|max| n > *max) {
            refuse(format!(
                "Invalid value: {value}: should be less than or equal to {max}"
            ));
        }
    }
    if let Some(s) = value.as_str() {
        let length = s.chars().count() as u64;
        if let Some(max) = schema["maxLength"].as_u64().filter(|max| length > *max) {
            refuse(format!("Too long: may not be more than {max} characters"));
        }
        if let Some(min) = schema["minLength"].as_u64().filter(|min| length < *min) {
            refuse(format!(
                "Invalid value: {value}: should be at least {min} characters long"
            ));
        }
        if let Some(allowed) = schema["enum"].as_array().filter(|a| !a.contains(value)) {
            let words: Vec<String> = allowed.iter().map(Value::to_string).collect();
            refuse(format!(
                "Unsupported value: {value}: supported values: {}",
                words.join(", ")
            ));
        }
    }
    if let Some(items) = value.as_array() {
        let count = items.len() as u64;
        if let Some(max) = schema["maxItems"].as_u64().filter(|max| count > *max) {
            refuse(format!("Too many: {count}: must have at most {max} items"));
        }
        if let Some(min) = schema["minItems"].as_u64().filter(|min| count < *min) {
            refuse(format!(
                "Invalid value: {count}: must have at least {min} items"
            ));
        }
    }
}

/// The CEL rules at this point of the schema, with `self` the value.
fn rules(schema: &Value, value: &Value, path: &str, found: &mut Vec<Invalid>) {
    let Some(rules) = schema["x-kubernetes-validations"].as_array() else {
        return;
    };
    for rule in rules {
        let Some(expression) = rule["rule"].as_str() else {
            continue;
        };
        if expression.contains("oldSelf") {
            continue;
        }
        let field = match rule["fieldPath"].as_str() {
            Some(sub) => format!("{path}{sub}"),
            None => path.to_string(),
        };
        match evaluate(expression, value) {
            Ok(true) => {}
            Ok(false) => {
                let message = rule["message"].as_str().unwrap_or(expression);
                found.push(invalid(&field, &format!("Invalid value: {message}")));
            }
            Err(why) => found.push(invalid(
                &field,
                &format!("rule {expression:?} failed: {why}"),
            )),
        }
    }
}

/// Evaluates one rule with `self` bound to `value`.
fn evaluate(expression: &str, value: &Value) -> Result<bool, String> {
    let program = cel::Program::compile(expression).map_err(|e| e.to_string())?;
    let mut context = cel::Context::default();
    let this = cel::to_value(value).map_err(|e| e.to_string())?;
    context
        .add_variable("self", this)
        .map_err(|e| e.to_string())?;
    context.add_function(
        "isSorted",
        |This(list): This<Arc<Vec<cel::Value>>>| -> bool {
            list.windows(2).all(|pair| pair[0] <= pair[1])
        },
    );
    match program.execute(&context).map_err(|e| e.to_string())? {
        cel::Value::Bool(answer) => Ok(answer),
        other => Err(format!("not a boolean: {other:?}")),
    }
}

fn invalid(field: &str, message: &str) -> Invalid {
    Invalid {
        field: field.to_string(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(spec: Value) -> MultiRegionApp {
        let mut base = serde_json::json!({
            "apiVersion": "multiregion.io/v1alpha1", "kind": "MultiRegionApp",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "strategy": "ActivePassive",
                "regions": [{"name": "us-east"}, {"name": "eu-west"}],
                "workload": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
            }
        });
        merge(&mut base["spec"], spec);
        serde_json::from_value(base).unwrap()
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn fields(spec: Value) -> Vec<String> {
        refusals(&app(spec))
            .unwrap()
            .into_iter()
            .map(|i| i.field)
            .collect()
    }

    #[test]
    fn a_spec_the_api_takes_passes() {
        assert_eq!(fields(serde_json::json!({})), Vec::<String>::new());
    }

    #[test]
    fn what_the_api_refuses_is_refused_with_its_field() {
        let table = [
            (
                serde_json::json!({"healthCheck": {"intervalSeconds": 2, "timeoutSeconds": 5}}),
                "spec.healthCheck.timeoutSeconds",
            ),
            (
                serde_json::json!({"standby": {"replicas": 5}}),
                "spec.standby.replicas",
            ),
            (
                serde_json::json!({"strategy": "FollowTheSun"}),
                "spec.regions",
            ),
            (
                serde_json::json!({"strategy": "ActiveActive", "regions": [{"name": "us-east", "weight": 0}, {"name": "eu-west", "weight": 0}]}),
                "spec.regions",
            ),
            (
                serde_json::json!({"healthCheck": {"failureThreshold": 0}}),
                "spec.healthCheck.failureThreshold",
            ),
            (
                serde_json::json!({"failover": {"activeOverride": "mars"}}),
                "spec.failover.activeOverride",
            ),
            (
                serde_json::json!({"failover": {"failbackSteps": [50, 10]}}),
                "spec.failover.failbackSteps",
            ),
            (
                serde_json::json!({"healthCheck": {"minReadyRatio": 0}}),
                "spec.healthCheck.minReadyRatio",
            ),
            (
                serde_json::json!({"regions": [{"name": "us-east"}, {"name": "us-east"}]}),
                "spec.regions",
            ),
        ];
        for (spec, field) in table {
            let found = fields(spec.clone());
            assert!(
                found.iter().any(|f| f == field),
                "{spec}: {found:?}, expected {field}"
            );
        }
    }
}
