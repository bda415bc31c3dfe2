//! `-o jsonpath=TEMPLATE` as kubectl reads it, for what people put in
//! scripts: text, `{.path}` (`.name`, `.name\.with\.dots`, `['key']`,
//! `[N]`, `[-1]`, `[*]`, filters `[?(@.name=="us-east")]` with `==` or
//! `!=`, or `[?(@.key)]` for items that have it), string literals (`{"\n"}`) and `{range PATH}...{end}`.
//! Several results are joined by spaces; strings print bare, anything else
//! as JSON.

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Token {
    Text(String),
    Path(String),
    Range(String),
    End,
}

/// Renders `template` over `value`, or says what in it is wrong.
pub fn render(template: &str, value: &Value) -> Result<String, String> {
    let tokens = tokens(template)?;
    let mut out = String::new();
    match emit(&tokens, value, &mut out)? {
        Ended::AtTheEnd => Ok(out),
        Ended::ByEnd(_) => Err(format!("jsonpath {template:?}: {{end}} without {{range}}")),
    }
}

/// Where writing tokens stopped: the template's end, or an `{end}` (with
/// what follows it).
enum Ended<'t> {
    AtTheEnd,
    ByEnd(&'t [Token]),
}

/// The template split into text and `{...}` parts.
fn tokens(template: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            tokens.push(Token::Text(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("jsonpath {template:?}: a {{ is not closed"))?
            + open;
        tokens.push(part(rest[open + 1..close].trim()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        tokens.push(Token::Text(rest.to_string()));
    }
    Ok(tokens)
}

fn part(inside: &str) -> Token {
    if let Some(path) = inside.strip_prefix("range ") {
        return Token::Range(path.trim().to_string());
    }
    if inside == "end" {
        return Token::End;
    }
    match inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(literal) => Token::Text(literal.replace("\\n", "\n").replace("\\t", "\t")),
        None => Token::Path(inside.to_string()),
    }
}

/// Writes the tokens up to a matching `{end}`, or to the last.
fn emit<'t>(tokens: &'t [Token], value: &Value, out: &mut String) -> Result<Ended<'t>, String> {
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Text(text) => out.push_str(text),
            Token::Path(path) => {
                let found = select(value, path)?;
                let shown: Vec<String> = found.iter().map(|v| shown(v)).collect();
                out.push_str(&shown.join(" "));
            }
            Token::Range(path) => {
                let body = &tokens[i + 1..];
                for item in select(value, path)? {
                    emit(body, item, out)?;
                }
                // Where the range ends, whether or not it had items.
                let Ended::ByEnd(after) = emit(body, &Value::Null, &mut String::new())? else {
                    return Err(format!("jsonpath: {{range {path}}} without {{end}}"));
                };
                i = tokens.len() - after.len();
                continue;
            }
            Token::End => return Ok(Ended::ByEnd(&tokens[i + 1..])),
        }
        i += 1;
    }
    Ok(Ended::AtTheEnd)
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The values `path` selects under `value`.
fn select<'v>(value: &'v Value, path: &str) -> Result<Vec<&'v Value>, String> {
    let mut current = vec![value];
    for step in steps(path)? {
        current = current
            .into_iter()
            .flat_map(|v| match (&step, v) {
                (Step::Key(key), Value::Object(map)) => map.get(key).into_iter().collect(),
                (Step::Index(i), Value::Array(items)) => {
                    let at = if *i < 0 { items.len() as i64 + i } else { *i };
                    usize::try_from(at)
                        .ok()
                        .and_then(|at| items.get(at))
                        .into_iter()
                        .collect()
                }
                (Step::Filter(filter), Value::Array(items)) => {
                    items.iter().filter(|item| filter.keeps(item)).collect()
                }
                (Step::All, Value::Array(items)) => items.iter().collect(),
                (Step::All, Value::Object(map)) => map.values().collect(),
                _ => Vec::new(),
            })
            .collect();
    }
    Ok(current)
}

#[derive(Debug)]
enum Step {
    Key(String),
    /// From the end when negative.
    Index(i64),
    All,
    Filter(Filter),
}

/// `?(@.path)`, `?(@.path==literal)` or `?(@.path!=literal)`.
#[derive(Debug)]
struct Filter {
    path: String,
    compared: Option<(bool, Value)>,
}

impl Filter {
    fn parse(inside: &str) -> Option<Filter> {
        let body = inside.strip_prefix("?(")?.strip_suffix(')')?.trim();
        let split = |op: &str| body.split_once(op).map(|(l, r)| (l.trim(), r.trim()));
        let (left, compared) = match (split("=="), split("!=")) {
            (Some((left, right)), _) => (left, Some((true, literal(right)?))),
            (None, Some((left, right))) => (left, Some((false, literal(right)?))),
            (None, None) => (body, None),
        };
        let path = left.strip_prefix('@')?.to_string();
        if path.contains(['<', '>', '=', '!', ' ']) {
            return None;
        }
        Some(Filter { path, compared })
    }

    fn keeps(&self, item: &Value) -> bool {
        let found = select(item, &self.path).unwrap_or_default();
        match &self.compared {
            None => found
                .iter()
                .any(|v| !matches!(v, Value::Null | Value::Bool(false))),
            Some((equal, want)) => found.iter().any(|v| same(v, want)) == *equal,
        }
    }
}

/// A filter's right-hand side: a quoted string, a number, true or false.
fn literal(text: &str) -> Option<Value> {
    let quoted = text
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| text.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
    match quoted {
        Some(string) => Some(Value::String(string.to_string())),
        None => serde_json::from_str(text)
            .ok()
            .filter(|v: &Value| !v.is_string()),
    }
}

/// Equal as JSON, numbers by value (`1` is `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// `.a.b\.c['d'][0][*]` as steps; a leading `$` is allowed.
fn steps(path: &str) -> Result<Vec<Step>, String> {
    let wrong = || format!("jsonpath: cannot read {path:?}");
    let mut chars = path.strip_prefix('$').unwrap_or(path).chars().peekable();
    let mut steps = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut key = String::new();
                while let Some(&n) = chars.peek() {
                    if n == '.' || n == '[' {
                        break;
                    }
                    chars.next();
                    match n {
                        '\\' => key.push(chars.next().ok_or_else(wrong)?),
                        _ => key.push(n),
                    }
                }
                if !key.is_empty() {
                    steps.push(Step::Key(key));
                }
            }
            '[' => {
                let inside: String = chars.by_ref().take_while(|&n| n != ']').collect();
                let quoted = inside
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                steps.push(match (quoted, inside.as_str()) {
                    (Some(key), _) => Step::Key(key.to_string()),
                    (None, "*") => Step::All,
                    (None, f) if f.starts_with('?') => {
                        Step::Filter(Filter::parse(f).ok_or_else(|| {
                            format!(
                                "jsonpath: cannot read the filter [{f}] (kept: ?(@.path), ==, !=)"
                            )
                        })?)
                    }
                    (None, n) => Step::Index(n.parse().map_err(|_| wrong())?),
                });
            }
            _ => return Err(wrong()),
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app() -> Value {
        json!({
            "metadata": {"name": "web", "annotations": {"multiregion.io/drained": "eu-west"}},
            "status": {"weights": "us-east=100 eu-west=0", "regions": [
                {"name": "us-east", "weight": 100}, {"name": "eu-west", "weight": 0}
            ]}
        })
    }

    #[test]
    fn paths_indices_and_wildcards() {
        let app = app();
        assert_eq!(
            render("{.status.weights}", &app).unwrap(),
            "us-east=100 eu-west=0"
        );
        assert_eq!(
            render("{.status.regions[1].name}", &app).unwrap(),
            "eu-west"
        );
        assert_eq!(
            render("{.status.regions[*].weight}", &app).unwrap(),
            "100 0"
        );
        assert_eq!(
            render("{.metadata.annotations.multiregion\\.io/drained}", &app).unwrap(),
            "eu-west"
        );
        assert_eq!(
            render(
                "drained: {.metadata.annotations['multiregion.io/drained']}",
                &app
            )
            .unwrap(),
            "drained: eu-west"
        );
        assert_eq!(render("{.status.nothing}", &app).unwrap(), "");
        assert_eq!(render("{$.metadata.name}", &app).unwrap(), "web");
    }

    #[test]
    fn negative_indices_and_filters() {
        let app = app();
        assert_eq!(
            render("{.status.regions[-1].name}", &app).unwrap(),
            "eu-west"
        );
        assert_eq!(render("{.status.regions[-3].name}", &app).unwrap(), "");
        assert_eq!(
            render("{.status.regions[?(@.name==\"us-east\")].weight}", &app).unwrap(),
            "100"
        );
        assert_eq!(
            render("{.status.regions[?(@.weight!=100)].name}", &app).unwrap(),
            "eu-west"
        );
        assert_eq!(
            render("{.status.regions[?(@.weight==0)].name}", &app).unwrap(),
            "eu-west"
        );
        assert_eq!(
            render("{.status.regions[?(@.name=='nowhere')].name}", &app).unwrap(),
            ""
        );
        assert_eq!(
            render("{.status.regions[?(@.weight)].name}", &app).unwrap(),
            "us-east eu-west"
        );
        let wrong = render("{.status.regions[?(@.weight>1)].name}", &app).unwrap_err();
        assert!(wrong.contains("cannot read the filter"), "{wrong}");
    }

    #[test]
    fn ranges_and_literals() {
        let list = json!({"items": [app(), {"metadata": {"name": "api"}}]});
        assert_eq!(
            render("{range .items[*]}{.metadata.name}{\"\\n\"}{end}", &list).unwrap(),
            "web\napi\n"
        );
        assert_eq!(
            render(
                "{range .items[*].status.regions[*]}{.name}={.weight} {end}done",
                &list
            )
            .unwrap(),
            "us-east=100 eu-west=0 done"
        );
        assert_eq!(render("{range .none[*]}x{end}ok", &list).unwrap(), "ok");
    }

    #[test]
    fn a_wrong_template_is_named() {
        assert!(
            render("{.status", &app())
                .unwrap_err()
                .contains("not closed")
        );
        assert!(
            render("{.items[x]}", &app())
                .unwrap_err()
                .contains("cannot read")
        );
        assert!(
            render("{end}", &app())
                .unwrap_err()
                .contains("without {range}")
        );
        assert!(
            render("{range .a[*]}x", &app())
                .unwrap_err()
                .contains("without {end}")
        );
    }
}
