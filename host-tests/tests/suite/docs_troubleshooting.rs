//! docs/troubleshooting.md cannot fall behind the code: every message the filter (the `.wasm` or
//! the dynamic module) can write to Envoy's log (found in the sources of filter/, module/ and
//! core/, tests left out) has exactly one row in the guide's "Messages the filter logs" table,
//! and every row there is a message the sources still log. No Envoy needed.
//!
//! A message is the first string literal of a logging call (`log::error!(...)` and the other
//! `log` macros, `log_warn(...)`, `warn_once(...)`, `hostcalls::log(...)`, `calls::log(...)`), or any string
//! literal that starts with `llm-pulse: ` (so a message built first and logged later is found
//! too). Its `{...}` placeholders match anything in the guide (`<field>`, `<reason>`, ...): the
//! fixed text between them must appear, in order, on the row.

use host_tests::envoy::repo_root;
use std::path::{Path, PathBuf};

const GUIDE: &str = "docs/troubleshooting.md";
const SECTION: &str = "## Messages the filter logs";
const CALLS: [&str; 12] = [
    "log::error!(",
    "log::warn!(",
    "log::info!(",
    "log::debug!(",
    "log::trace!(",
    "error!(",
    "warn!(",
    "info!(",
    "log_warn(",
    "warn_once(",
    "hostcalls::log(",
    "calls::log(",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source without `#[cfg(test)]` items (a `mod tests { ... }` or `mod tests;`) and without
/// comments (a doc comment may quote a message it does not log).
fn non_test_code(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let semi = after.find(';').unwrap_or(after.len());
        let brace = after.find('{').unwrap_or(after.len());
        if semi < brace {
            rest = &after[(semi + 1).min(after.len())..];
            continue;
        }
        // Skip the balanced block.
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after.char_indices().skip_while(|(i, _)| *i < brace) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The string literal starting at `s[0] == '"'`, unescaped, and the bytes it spans.
fn literal(s: &str) -> (String, usize) {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, i + 1),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, '\n')) => {
                    // Line continuation: skip the next line's indentation.
                    for (_, c) in chars.by_ref() {
                        if !c.is_whitespace() {
                            out.push(c);
                            break;
                        }
                    }
                }
                Some((_, c)) => out.push(c),
                None => break,
            },
            c => out.push(c),
        }
    }
    (out, s.len())
}

/// The first string literal inside the parentheses that open at `s[0]`.
fn first_literal_in_call(s: &str) -> Option<String> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < s.len() {
        let c = s[i..].chars().next()?;
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return None;
                }
            }
            '"' => return Some(literal(&s[i..]).0),
            _ => {}
        }
        i += c.len_utf8();
    }
    None
}

/// The fixed text of a format string between its `{...}` placeholders.
fn fixed_parts(format: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                parts.last_mut().unwrap().push('{');
            }
            '{' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                parts.push(String::new());
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                parts.last_mut().unwrap().push('}');
            }
            c => parts.last_mut().unwrap().push(c),
        }
    }
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Every message the filter can log: (file, format string).
fn logged_messages() -> Vec<(String, String)> {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["filter/src", "module/src", "core/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut found: Vec<(String, String)> = Vec::new();
    for file in files {
        // Test-only files (`mod tests;` targets) hold no shipped messages.
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let code = non_test_code(&std::fs::read_to_string(&file).unwrap());
        let name = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let mut add = |msg: String| {
            // A pass-through (`"{msg}"`) has no fixed text of its own.
            if !fixed_parts(&msg).is_empty() && !found.iter().any(|(_, m)| *m == msg) {
                found.push((name.clone(), msg));
            }
        };
        for call in CALLS {
            let mut from = 0;
            while let Some(at) = code[from..].find(call) {
                let open = from + at + call.len() - 1;
                // `error!(` inside `log::error!(` is the same call; either finds it.
                if let Some(msg) = first_literal_in_call(&code[open..]) {
                    add(msg);
                }
                from = open + 1;
            }
        }
        let mut from = 0;
        while let Some(at) = code[from..].find("\"llm-pulse: ") {
            let (msg, len) = literal(&code[from + at..]);
            add(msg);
            from += at + len.max(1);
        }
    }
    found
}

/// Whether `line` holds every part, in order.
fn line_has(line: &str, parts: &[String]) -> bool {
    let mut rest = line;
    for p in parts {
        match rest.find(p.as_str()) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// The rows of the guide's message table (lines starting with "| `").
fn guide_rows() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join(GUIDE)).unwrap();
    let start = text
        .find(SECTION)
        .unwrap_or_else(|| panic!("{GUIDE} has no {SECTION:?} section"));
    let section = &text[start + SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_logged_message_has_exactly_one_row_in_the_guide() {
    let messages = logged_messages();
    // The extraction itself works: these are logged today.
    for known in [
        "llm-pulse: invalid plugin configuration: {e}",
        "{VERSION_LINE} configured: prefix={}, max_models={}, targets={}",
        "{VERSION_LINE} panicked: {info}",
    ] {
        assert!(
            messages.iter().any(|(_, m)| m == known),
            "{known:?} not found in {messages:#?}"
        );
    }
    let rows = guide_rows();
    let mut failures = Vec::new();
    for (file, msg) in &messages {
        let parts = fixed_parts(msg);
        let n = rows.iter().filter(|r| line_has(r, &parts)).count();
        if n != 1 {
            failures.push(format!(
                "{file}: {msg:?} has {n} rows in {GUIDE} ({SECTION}), want 1"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_row_of_the_guide_is_a_message_the_filter_logs() {
    let messages = logged_messages();
    let rows = guide_rows();
    assert!(!rows.is_empty(), "{GUIDE}: no message rows");
    for row in rows {
        assert!(
            messages
                .iter()
                .any(|(_, m)| line_has(&row, &fixed_parts(m))),
            "{GUIDE} lists a message the sources no longer log: {row}\nlogged: {messages:#?}"
        );
    }
}

#[test]
fn placeholders_and_literals_are_read_as_rust_does() {
    assert_eq!(
        fixed_parts("{VERSION_LINE} configured: prefix={}, max_models={}, targets={}"),
        ["configured: prefix=", ", max_models=", ", targets="]
    );
    assert_eq!(fixed_parts("{msg}"), Vec::<String>::new());
    assert_eq!(fixed_parts("a {{b}} {c}"), ["a {b}"]);
    assert_eq!(
        first_literal_in_call("(host, &format!(\"x \\\"y\\\" {e}\"))"),
        Some("x \"y\" {e}".to_string())
    );
    assert_eq!(first_literal_in_call("(&self, msg: &str)"), None);
    assert_eq!(
        literal("\"a \\\n     b\"").0,
        "a b",
        "a line continuation drops the indentation"
    );
    let code = non_test_code("fn a() {}\n#[cfg(test)]\nmod tests {\n fn b() { log::warn!(\"t\"); }\n}\nfn c() {}\n// \"llm-pulse: doc\"\n");
    assert!(code.contains("fn a") && code.contains("fn c"), "{code}");
    assert!(
        !code.contains("log::warn") && !code.contains("llm-pulse"),
        "{code}"
    );
}
