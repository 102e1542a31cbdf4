//! A discovered field's glob (`*.yaml`) as a regex: the param's `pattern`, checked here and sent to clients in the
//! params schema.

use regex::Regex;

/// ECMAScript's SyntaxCharacter set. JavaScript clients compile a schema `pattern` in unicode mode (ajv does),
/// where escaping anything else (`\-`, `\#`) is an error; Rust accepts these escapes too, so escaping exactly these
/// and writing every other character as itself gives a pattern both engines read the same way.
const SYNTAX_CHARACTERS: &[char] = &['^', '$', '\\', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|'];

/// An anchored regex for a glob: `*` any run of characters but `/`, `?` one character but `/`, anything else
/// itself; it must match the whole value or its last path components (`*.yaml` matches `conf/a.yaml`). Only
/// negated one-character classes are used for the wildcards: `.` differs between the engines (JavaScript's also
/// stops at `\r` and U+2028), `[^/]` does not.
pub fn glob_regex(glob: &str) -> Result<Regex, GlobError> {
    let mut re = String::from("(^|/)");
    for c in glob.chars() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c if SYNTAX_CHARACTERS.contains(&c) => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|reason| GlobError {
        glob: glob.to_owned(),
        reason,
    })
}

/// A glob whose regex the engine refuses (too large, say).
#[derive(Debug, thiserror::Error)]
#[error("pattern \"{glob}\" cannot be used: {reason}")]
pub struct GlobError {
    pub glob: String,
    pub reason: regex::Error,
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use serde_json::{Value, json};

    use super::*;

    /// Globs with every character a regex treats specially, inside and outside classes.
    const GLOBS: &[&str] = &[
        "*.yaml",
        "*-v1.#x",
        "a+b(c)",
        "[ab]?.yaml",
        "[!a]*",
        "{x,y}|z^$",
        r"back\slash",
        "dots...",
        "a/b/*.json",
        "π*.txt",
        "&~<>=!:%@`'\" ,;",
    ];

    /// File names to match each glob's pattern against, in both engines.
    const NAMES: &[&str] = &[
        "x.yaml",
        "dir/x.yaml",
        "x.yaml.bak",
        "x-v1.#x",
        "dir/x-v1.#x",
        "x-v1a#x",
        "a+b(c)",
        "aab(c)",
        "[ab]x.yaml",
        "ax.yaml",
        "[!a]b",
        "{x,y}|z^$",
        r"back\slash",
        "dots...",
        "dotsabc",
        "a/b/c.json",
        "z/a/b/c.json",
        "a/b/c/d.json",
        "π1.txt",
        "dir/π.txt",
        "😀.yaml",
        "x\ny.yaml",
        "x\ry.yaml",
        "x\u{2028}y.yaml",
        "&~<>=!:%@`'\" ,;",
        "",
    ];

    /// What a JavaScript client does with a schema `pattern` (ajv compiles it with the `u` flag): for each pattern
    /// the names it matches, or the error message when it does not compile.
    fn ecmascript_matches(patterns: &[String], names: &[&str]) -> Vec<Value> {
        let script = "const {patterns, names} = JSON.parse(process.argv[1]);
            console.log(JSON.stringify(patterns.map(p => {
                try { const re = new RegExp(p, 'u'); return names.map(n => re.test(n)); }
                catch (e) { return String(e.message); }
            })));";
        let input = json!({"patterns": patterns, "names": names}).to_string();
        let out = Command::new("node")
            .args(["-e", script, &input])
            .output()
            .unwrap_or_else(|e| {
                panic!("this test needs node (Node.js) on PATH (CI has it) to check patterns the way JavaScript clients do: {e}")
            });
        assert!(
            out.status.success(),
            "node failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("node prints a JSON array")
    }

    #[test]
    fn glob_patterns_compile_and_match_alike_in_rust_and_ecmascript_unicode_mode() {
        let regexes: Vec<Regex> = GLOBS.iter().map(|g| glob_regex(g).unwrap()).collect();
        let patterns: Vec<String> = regexes.iter().map(|r| r.as_str().to_owned()).collect();
        let ecmascript = ecmascript_matches(&patterns, NAMES);
        for ((glob, re), js) in GLOBS.iter().zip(&regexes).zip(&ecmascript) {
            let rust: Vec<bool> = NAMES.iter().map(|n| re.is_match(n)).collect();
            let Value::Array(js) = js else {
                panic!(
                    "glob {glob:?} gives pattern {:?}, which JavaScript refuses: {js}",
                    re.as_str()
                );
            };
            for ((name, r), j) in NAMES.iter().zip(&rust).zip(js) {
                assert_eq!(
                    Some(*r),
                    j.as_bool(),
                    "glob {glob:?}, pattern {:?}, name {name:?}: rust and javascript disagree",
                    re.as_str()
                );
            }
        }
    }

    #[test]
    fn a_glob_matches_the_value_or_its_last_components_with_its_other_characters_literal() {
        let matches = |glob: &str, name: &str| glob_regex(glob).unwrap().is_match(name);
        assert!(matches("*.yaml", "x.yaml"));
        assert!(matches("*.yaml", "conf/x.yaml"));
        assert!(!matches("*.yaml", "x.yaml.bak"));
        assert!(!matches("*.yaml", "xyaml"), "the dot is literal");
        assert!(matches("*-v1.#x", "build-v1.#x"));
        assert!(!matches("*-v1.#x", "build-v1a#x"));
        assert!(matches("a+b(c)", "a+b(c)"));
        assert!(!matches("a+b(c)", "aab(c)"));
        assert!(matches("[ab]?.yaml", "[ab]x.yaml"), "brackets are literal");
        assert!(!matches("[ab]?.yaml", "ax.yaml"));
        assert!(matches("analysis_?.yaml", "analysis_1.yaml"));
        assert!(!matches("analysis_?.yaml", "analysis_12.yaml"));
    }
}
