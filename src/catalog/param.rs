//! Typed workflow parameters: checking an agent's JSON values, mapping them onto the command (option with value,
//! boolean flag, positional, environment variable), and the JSON Schema an agent fills in.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The JSON type of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
}

/// How a parameter's value reaches the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// `--x value` appended.
    Arg(String),
    /// `--x` appended when the boolean is true.
    Flag(String),
    /// The value appended as its own argument, in declaration order.
    Positional,
    /// The value set as this environment variable.
    Env(String),
}

/// A validated parameter of a workflow.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub kind: ParamType,
    pub description: String,
    pub required: bool,
    pub default: Option<Value>,
    pub allowed: Option<Vec<Value>>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub pattern: Option<Regex>,
    pub delivery: Delivery,
}

/// Longest string value a param accepts; a longer one is an error, never silently cut.
pub const MAX_PARAM_VALUE_BYTES: usize = 64 * 1024;
/// Most params one call may pass.
pub const MAX_PARAMS_PER_CALL: usize = 128;
/// Most bytes of values one call may pass in all (a string counts its bytes, another value its JSON text): the
/// params are kept with the execution, in the history too. One value of the longest length always fits.
pub const MAX_PARAMS_BYTES_PER_CALL: usize = MAX_PARAM_VALUE_BYTES;

/// What a call's params turn into.
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    /// Arguments after the command's own argv.
    pub args: Vec<String>,
    /// Environment variables set by params.
    pub env: Vec<(String, String)>,
    /// Every param with a value (given or default), as JSON.
    pub values: Map<String, Value>,
}

fn describe_value(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let mut end = 77;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

impl Param {
    /// A param with no description, constraint or default.
    pub fn new(name: &str, kind: ParamType, delivery: Delivery) -> Param {
        Param {
            name: name.to_owned(),
            kind,
            description: String::new(),
            required: false,
            default: None,
            allowed: None,
            minimum: None,
            maximum: None,
            pattern: None,
            delivery,
        }
    }

    /// "an integer between 1 and 10", "one of \"a\", \"b\"", ... — what a value must be.
    pub fn expected(&self) -> String {
        if let Some(allowed) = &self.allowed {
            let list: Vec<String> = allowed.iter().map(describe_value).collect();
            return format!("one of {}", list.join(", "));
        }
        let mut s = match self.kind {
            ParamType::String => "a string".to_owned(),
            ParamType::Integer => "an integer".to_owned(),
            ParamType::Number => "a number".to_owned(),
            ParamType::Boolean => "true or false".to_owned(),
        };
        match (self.minimum, self.maximum) {
            (Some(lo), Some(hi)) => write!(s, " between {} and {}", fmt_num(lo), fmt_num(hi)),
            (Some(lo), None) => write!(s, " >= {}", fmt_num(lo)),
            (None, Some(hi)) => write!(s, " <= {}", fmt_num(hi)),
            (None, None) => Ok(()),
        }
        .expect("writing to a String cannot fail");
        if let Some(p) = &self.pattern {
            write!(s, " matching /{}/", p.as_str()).expect("writing to a String cannot fail");
        }
        s
    }

    fn error(&self, got: &Value) -> ParamError {
        ParamError::Invalid {
            name: self.name.clone(),
            expected: self.expected(),
            got: describe_value(got),
        }
    }

    /// Checks a value and returns it in canonical JSON form. Numbers and booleans given as strings
    /// (`"5"`, `"true"`) are accepted and converted, since agents often send them that way.
    pub fn check(&self, value: &Value) -> Result<Value, ParamError> {
        let canonical = match (self.kind, value) {
            (ParamType::String, Value::String(s)) => {
                if s.len() > MAX_PARAM_VALUE_BYTES {
                    return Err(ParamError::TooLong {
                        name: self.name.clone(),
                        len: s.len(),
                    });
                }
                if s.contains('\0') {
                    return Err(ParamError::Nul(self.name.clone()));
                }
                Value::String(s.clone())
            }
            (ParamType::Integer, Value::Number(n)) => match n.as_i64() {
                Some(i) => json!(i),
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => json!(f as i64),
                    _ => return Err(self.error(value)),
                },
            },
            (ParamType::Integer, Value::String(s)) => match s.trim().parse::<i64>() {
                Ok(i) => json!(i),
                Err(_) => return Err(self.error(value)),
            },
            (ParamType::Number, Value::Number(n)) => n.as_f64().map(number_value).ok_or_else(|| self.error(value))?,
            (ParamType::Number, Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => number_value(f),
                _ => return Err(self.error(value)),
            },
            (ParamType::Boolean, Value::Bool(b)) => Value::Bool(*b),
            (ParamType::Boolean, Value::String(s)) if s == "true" || s == "false" => Value::Bool(s == "true"),
            _ => return Err(self.error(value)),
        };
        if let Some(allowed) = &self.allowed
            && !allowed.iter().any(|a| values_equal(a, &canonical))
        {
            return Err(self.error(value));
        }
        if let Some(f) = canonical.as_f64() {
            let below = self.minimum.is_some_and(|lo| f < lo);
            let above = self.maximum.is_some_and(|hi| f > hi);
            if below || above {
                return Err(self.error(value));
            }
        }
        if let (Some(re), Value::String(s)) = (&self.pattern, &canonical)
            && !re.is_match(s)
        {
            return Err(self.error(value));
        }
        // Whatever the type (a string, or a negative number), a positional's text is never an option: refused
        // rather than preceded by `--`, which programs that do not parse options would take as a value.
        if self.delivery == Delivery::Positional && render_value(&canonical).starts_with('-') {
            return Err(ParamError::LooksLikeAnOption {
                name: self.name.clone(),
                got: describe_value(value),
            });
        }
        Ok(canonical)
    }

    /// The JSON Schema of this param, as an agent sees it.
    pub fn schema(&self) -> Value {
        let mut s = Map::new();
        s.insert("type".into(), json!(self.kind));
        if !self.description.is_empty() {
            s.insert("description".into(), json!(self.description));
        }
        if let Some(d) = &self.default {
            s.insert("default".into(), d.clone());
        }
        if let Some(a) = &self.allowed {
            s.insert("enum".into(), Value::Array(a.clone()));
        }
        if let Some(lo) = self.minimum {
            s.insert("minimum".into(), number_value(lo));
        }
        if let Some(hi) = self.maximum {
            s.insert("maximum".into(), number_value(hi));
        }
        if let Some(p) = &self.pattern {
            s.insert("pattern".into(), json!(p.as_str()));
        }
        if self.kind == ParamType::String {
            s.insert("maxLength".into(), json!(MAX_PARAM_VALUE_BYTES));
        }
        Value::Object(s)
    }
}

/// A JSON number for `f`, written as an integer when it has no fraction (`5`, not `5.0`).
pub fn number_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9e15 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The command-line text of a checked value: integers and whole numbers without a fraction.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => fmt_num(f),
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// The JSON Schema object of a whole parameter list.
pub fn params_schema(params: &[Param]) -> Value {
    let properties: Map<String, Value> = params.iter().map(|p| (p.name.clone(), p.schema())).collect();
    let required: Vec<&str> = params
        .iter()
        .filter(|p| p.required && p.default.is_none())
        .map(|p| p.name.as_str())
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// Why an agent's param values were refused; each names the param and what would be right.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error("param \"{name}\" must be {expected}, got {got}")]
    Invalid {
        name: String,
        expected: String,
        got: String,
    },
    #[error("param \"{name}\" is {len} bytes long; the limit is {MAX_PARAM_VALUE_BYTES} bytes")]
    TooLong { name: String, len: usize },
    #[error("param \"{0}\" must not contain a NUL character")]
    Nul(String),
    #[error(
        "param \"{name}\" is passed as a positional argument, so it must not start with '-' (it would be read as an \
         option), got {got}"
    )]
    LooksLikeAnOption { name: String, got: String },
    #[error("{0} params given; a call takes at most {MAX_PARAMS_PER_CALL}")]
    TooMany(usize),
    #[error(
        "the params' values take {0} bytes in all; a call takes at most {MAX_PARAMS_BYTES_PER_CALL}: pass large data \
         in a file, and its path as the param"
    )]
    TooLarge(usize),
    #[error("{}", unknown_param(name, workflow, known))]
    Unknown {
        name: String,
        workflow: String,
        known: String,
    },
    #[error("missing required param \"{name}\" ({expected}); workflow \"{workflow}\" needs it")]
    Missing {
        name: String,
        expected: String,
        workflow: String,
    },
}

fn unknown_param(name: &str, workflow: &str, known: &str) -> String {
    if known.is_empty() {
        format!("unknown param \"{name}\": workflow \"{workflow}\" takes no params")
    } else {
        format!("unknown param \"{name}\" for workflow \"{workflow}\"; known params: {known}")
    }
}

/// Checks an agent's params against a workflow's list and maps them onto the command.
pub fn resolve(workflow: &str, params: &[Param], given: &Map<String, Value>) -> Result<Invocation, ParamError> {
    if given.len() > MAX_PARAMS_PER_CALL {
        return Err(ParamError::TooMany(given.len()));
    }
    let size: usize = given
        .values()
        .map(|v| match v {
            Value::String(s) => s.len(),
            Value::Null => 0,
            other => other.to_string().len(),
        })
        .sum();
    if size > MAX_PARAMS_BYTES_PER_CALL {
        return Err(ParamError::TooLarge(size));
    }
    for name in given.keys() {
        if !params.iter().any(|p| &p.name == name) {
            let known: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
            return Err(ParamError::Unknown {
                name: name.clone(),
                workflow: workflow.to_owned(),
                known: known.join(", "),
            });
        }
    }
    let mut inv = Invocation::default();
    let mut positionals = Vec::new();
    let mut env = BTreeMap::new();
    for p in params {
        let value = match given.get(&p.name).filter(|v| !v.is_null()) {
            Some(v) => p.check(v)?,
            None => match &p.default {
                Some(d) => d.clone(),
                None if p.required => {
                    return Err(ParamError::Missing {
                        name: p.name.clone(),
                        expected: p.expected(),
                        workflow: workflow.to_owned(),
                    });
                }
                None => continue,
            },
        };
        let text = render_value(&value);
        match &p.delivery {
            Delivery::Arg(opt) => {
                inv.args.push(opt.clone());
                inv.args.push(text);
            }
            Delivery::Flag(opt) => {
                if value == Value::Bool(true) {
                    inv.args.push(opt.clone());
                }
            }
            Delivery::Positional => positionals.push(text),
            Delivery::Env(var) => {
                env.insert(var.clone(), text);
            }
        }
        inv.values.insert(p.name.clone(), value);
    }
    inv.args.extend(positionals);
    inv.env = env.into_iter().collect();
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, kind: ParamType, delivery: Delivery) -> Param {
        Param::new(name, kind, delivery)
    }

    fn sample() -> Vec<Param> {
        vec![
            param("filter", ParamType::String, Delivery::Positional),
            Param {
                default: Some(json!(false)),
                ..param("release", ParamType::Boolean, Delivery::Flag("--release".into()))
            },
            Param {
                minimum: Some(1.0),
                maximum: Some(64.0),
                ..param("jobs", ParamType::Integer, Delivery::Arg("--jobs".into()))
            },
            Param {
                required: true,
                allowed: Some(vec![json!("info"), json!("debug")]),
                ..param("level", ParamType::String, Delivery::Env("LOG_LEVEL".into()))
            },
            param("ratio", ParamType::Number, Delivery::Arg("--ratio".into())),
        ]
    }

    fn given(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn values_map_onto_args_flags_positionals_and_env() {
        let inv = resolve(
            "test",
            &sample(),
            &given(json!({"filter": "net", "release": true, "jobs": 4, "level": "debug", "ratio": 5.0})),
        )
        .unwrap();
        assert_eq!(inv.args, ["--release", "--jobs", "4", "--ratio", "5", "net"]);
        assert_eq!(inv.env, [("LOG_LEVEL".to_owned(), "debug".to_owned())]);
        assert_eq!(inv.values["ratio"], json!(5));
    }

    #[test]
    fn strings_holding_numbers_and_booleans_are_accepted() {
        let inv = resolve(
            "t",
            &sample(),
            &given(json!({"jobs": "8", "release": "true", "level": "info"})),
        )
        .unwrap();
        assert_eq!(inv.args, ["--release", "--jobs", "8"]);
        assert_eq!(inv.values["jobs"], json!(8));
    }

    #[test]
    fn every_invalid_input_names_the_param_and_what_is_expected() {
        let p = sample();
        let err = |v: Value| resolve("test", &p, &given(v)).unwrap_err().to_string();
        assert_eq!(
            err(json!({"level": "info", "jobs": "many"})),
            "param \"jobs\" must be an integer between 1 and 64, got \"many\""
        );
        assert_eq!(
            err(json!({"level": "info", "jobs": 65})),
            "param \"jobs\" must be an integer between 1 and 64, got 65"
        );
        assert_eq!(
            err(json!({"level": "trace"})),
            "param \"level\" must be one of \"info\", \"debug\", got \"trace\""
        );
        assert_eq!(
            err(json!({})),
            "missing required param \"level\" (one of \"info\", \"debug\"); workflow \"test\" needs it"
        );
        assert_eq!(
            err(json!({"level": "info", "bogus": 1})),
            "unknown param \"bogus\" for workflow \"test\"; known params: filter, release, jobs, level, ratio"
        );
        assert!(err(json!({"level": "info", "filter": "--evil"})).contains("must not start with '-'"));
        assert_eq!(
            err(json!({"level": "info", "release": 1})),
            "param \"release\" must be true or false, got 1"
        );
        assert_eq!(
            err(json!({"level": "info", "jobs": 2.5})),
            "param \"jobs\" must be an integer between 1 and 64, got 2.5"
        );
    }

    #[test]
    fn a_negative_number_never_reaches_the_program_as_an_option() {
        let p = vec![
            param("count", ParamType::Integer, Delivery::Positional),
            param("scale", ParamType::Number, Delivery::Positional),
            param("offset", ParamType::Integer, Delivery::Arg("--offset".into())),
        ];
        let err = |v: Value| resolve("head", &p, &given(v)).unwrap_err().to_string();
        assert_eq!(
            err(json!({"count": -5})),
            "param \"count\" is passed as a positional argument, so it must not start with '-' (it would be read \
             as an option), got -5"
        );
        assert!(err(json!({"count": "-5"})).contains("must not start with '-'"));
        assert!(err(json!({"scale": -0.5})).contains("got -0.5"));
        let bad_default = Param {
            default: Some(json!(-1)),
            ..param("count", ParamType::Integer, Delivery::Positional)
        };
        assert!(
            bad_default.check(&json!(-1)).is_err(),
            "a config's default is checked the same way"
        );
        // An option's value follows its option, so it may be negative.
        let inv = resolve("head", &p, &given(json!({"count": 5, "offset": -3}))).unwrap();
        assert_eq!(inv.args, ["--offset", "-3", "5"]);
    }

    #[test]
    fn schema_lists_types_constraints_and_required() {
        let s = params_schema(&sample());
        assert_eq!(s["required"], json!(["level"]));
        assert_eq!(
            s["properties"]["jobs"],
            json!({"type": "integer", "minimum": 1, "maximum": 64})
        );
        assert_eq!(s["properties"]["level"]["enum"], json!(["info", "debug"]));
        assert_eq!(s["additionalProperties"], json!(false));
    }
}
