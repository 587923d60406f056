use super::*;

fn err(text: &str) -> Error {
    parse(text.as_bytes()).unwrap_err()
}

fn kind(text: &str) -> ErrorKind {
    err(text).kind
}

fn string(text: &str) -> String {
    match parse(text.as_bytes()).unwrap() {
        Value::String(s) => s,
        other => panic!("{text}: {other:?}"),
    }
}

fn number(text: &str) -> Number {
    match parse(text.as_bytes()).unwrap() {
        Value::Number(n) => n,
        other => panic!("{text}: {other:?}"),
    }
}

#[test]
fn values() {
    let v = parse(br#" {"a" : [true, false, null, 1, "x", {}, []], "b": {"c": "d"}} "#).unwrap();
    assert_eq!(v.get("a").unwrap().as_array().unwrap().len(), 7, "{v:?}");
    assert_eq!(v.get("b").unwrap().get("c").unwrap().as_str(), Some("d"));
    assert_eq!(
        v.get("a").unwrap().as_array().unwrap()[0].as_bool(),
        Some(true)
    );
    assert!(v.get("a").unwrap().as_array().unwrap()[2].is_null());
    assert_eq!(v.get("z"), None);
    assert_eq!(parse(b"[1]").unwrap().get("a"), None);
    // A repeated key: both kept, the last one found.
    let v = parse(br#"{"k":1,"k":2}"#).unwrap();
    assert_eq!(v.get("k").unwrap().as_u64(), Some(2));
    assert_eq!(v.to_json(), r#"{"k":1,"k":2}"#);
}

#[test]
fn string_escapes() {
    assert_eq!(string(r#""\"\\\/\b\f\n\r\t""#), "\"\\/\u{8}\u{c}\n\r\t");
    assert_eq!(string(r#""\u0041\u00e9\u20AC""#), "Aé€");
    assert_eq!(string(r#""\ud83d\ude00""#), "😀");
    assert_eq!(string(r#""\uD83D\uDE00x""#), "😀x");
    assert_eq!(string("\"é😀 raw\""), "é😀 raw");
    assert_eq!(string(r#""\u0000""#), "\0");
    for (text, want) in [
        (r#""\ud83d""#, ErrorKind::LoneSurrogate),
        (r#""\ud83dx""#, ErrorKind::LoneSurrogate),
        (r#""\ud83d\u0041""#, ErrorKind::LoneSurrogate),
        (r#""\ud83d\n""#, ErrorKind::LoneSurrogate),
        (r#""\ude00""#, ErrorKind::LoneSurrogate),
        (r#""\q""#, ErrorKind::InvalidEscape),
        (r#""\u12""#, ErrorKind::InvalidEscape),
        (r#""\u12g4""#, ErrorKind::InvalidEscape),
        (r#""\u12"#, ErrorKind::EofInString),
        ("\"a\u{1}\"", ErrorKind::ControlCharacter),
        ("\"a\n\"", ErrorKind::ControlCharacter),
        ("\"abc", ErrorKind::EofInString),
    ] {
        assert_eq!(kind(text), want, "{text}");
    }
    assert_eq!(parse(b"\"\xff\"").unwrap_err().kind, ErrorKind::InvalidUtf8);
    assert_eq!(parse(b"\"\xc3\"").unwrap_err().kind, ErrorKind::InvalidUtf8);
}

#[test]
fn numbers_keep_their_text() {
    let max = number("18446744073709551615");
    assert_eq!(max.as_u64(), Some(u64::MAX));
    assert_eq!(max.as_i64(), None);
    let big = number("18446744073709551616");
    assert!(big.is_integer());
    assert_eq!((big.as_u64(), big.as_i64()), (None, None));
    assert_eq!(number("123456789012345678901234567890").as_u64(), None);
    let neg = number("-1");
    assert_eq!((neg.as_u64(), neg.as_i64()), (None, Some(-1)));
    assert_eq!(number("-9223372036854775808").as_i64(), Some(i64::MIN));
    assert_eq!(number("-9223372036854775809").as_i64(), None);
    assert_eq!(number("0").as_u64(), Some(0));
    for float in ["1.0", "1e2", "1E-2", "-0.5", "0.0", "2.5e+3", "1.50"] {
        let n = number(float);
        assert!(!n.is_integer(), "{float}");
        assert_eq!((n.as_u64(), n.as_i64()), (None, None), "{float}");
        assert_eq!(n.as_str(), float);
    }
    let v = parse(b"[0,-0,1.50,1e400,-12.5E-3,123456789012345678901]").unwrap();
    assert_eq!(
        v.to_json(),
        "[0,-0,1.50,1e400,-12.5E-3,123456789012345678901]"
    );
    for (text, want) in [
        ("01", ErrorKind::InvalidNumber),
        ("-01", ErrorKind::InvalidNumber),
        ("1.", ErrorKind::EofInValue),
        ("[1.]", ErrorKind::InvalidNumber),
        ("[1.e2]", ErrorKind::InvalidNumber),
        ("[1e]", ErrorKind::InvalidNumber),
        ("[1e+]", ErrorKind::InvalidNumber),
        ("-", ErrorKind::EofInValue),
        ("[-]", ErrorKind::InvalidNumber),
        ("--1", ErrorKind::InvalidNumber),
        ("+1", ErrorKind::ExpectedValue),
        (".5", ErrorKind::ExpectedValue),
        ("1 2", ErrorKind::TrailingCharacters),
        ("0x10", ErrorKind::TrailingCharacters),
    ] {
        assert_eq!(kind(text), want, "{text}");
    }
}

#[test]
fn syntax_errors() {
    for (text, want) in [
        ("", ErrorKind::EofInValue),
        ("   ", ErrorKind::EofInValue),
        ("{", ErrorKind::EofInObject),
        ("{\"a\"", ErrorKind::EofInObject),
        ("{\"a\":", ErrorKind::EofInValue),
        ("{\"a\":1", ErrorKind::EofInObject),
        ("{\"a\":1,", ErrorKind::EofInValue),
        ("{\"a\":1, ", ErrorKind::EofInValue),
        ("{\"a\" 1}", ErrorKind::ExpectedColon),
        ("{\"a\":1 \"b\":2}", ErrorKind::ExpectedCommaOrBrace),
        ("{\"a\":1,}", ErrorKind::TrailingComma),
        ("{1:2}", ErrorKind::KeyMustBeAString),
        ("{,}", ErrorKind::KeyMustBeAString),
        ("[", ErrorKind::EofInArray),
        ("[1,", ErrorKind::EofInValue),
        ("[1", ErrorKind::EofInArray),
        ("[1 2]", ErrorKind::ExpectedCommaOrBracket),
        ("[1,]", ErrorKind::TrailingComma),
        ("[,]", ErrorKind::ExpectedValue),
        ("tru", ErrorKind::EofInValue),
        ("trux", ErrorKind::ExpectedIdent),
        ("nul", ErrorKind::EofInValue),
        ("True", ErrorKind::ExpectedValue),
        ("'a'", ErrorKind::ExpectedValue),
        ("{} x", ErrorKind::TrailingCharacters),
        ("{}{}", ErrorKind::TrailingCharacters),
        ("\"a\"\"b\"", ErrorKind::TrailingCharacters),
        ("\u{feff}{}", ErrorKind::ExpectedValue),
        ("\u{c}{}", ErrorKind::ExpectedValue),
    ] {
        assert_eq!(kind(text), want, "{text:?}");
    }
    // Whitespace around the value is JSON.
    assert!(parse(b" \t\r\n{} \t\r\n").is_ok());
    let e = err("{} x");
    assert_eq!((e.offset, e.path.len()), (3, 0));
    assert_eq!(e.to_string(), "trailing characters at byte 3");
}

#[test]
fn errors_name_the_path_to_the_broken_value() {
    let e = err(r#"{"a":[1,{"b":tru}]}"#);
    assert_eq!(e.kind, ErrorKind::ExpectedIdent);
    assert_eq!(
        e.path,
        vec![
            PathSeg::Key("a".into()),
            PathSeg::Index(1),
            PathSeg::Key("b".into())
        ]
    );
    // Between entries the error is the object's own, not an entry's.
    assert_eq!(err(r#"{"a":{"b":1"#).path, vec![PathSeg::Key("a".into())]);
    assert_eq!(err(r#"{"a":1"#).path, vec![]);
}

#[test]
fn depth_is_limited() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
    assert_eq!(kind(&nested(MAX_DEPTH + 1)), ErrorKind::RecursionLimit);
    let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    assert!(parse(objects(MAX_DEPTH).as_bytes()).is_ok());
    assert_eq!(kind(&objects(MAX_DEPTH + 1)), ErrorKind::RecursionLimit);
    // Far deeper than any stack would take: still an error.
    assert_eq!(kind(&"[".repeat(1_000_000)), ErrorKind::RecursionLimit);
    assert_eq!(
        kind(&"{\"a\":".repeat(1_000_000)),
        ErrorKind::RecursionLimit
    );
}

const DOC: &str = r#"{"s":"a\"\\\u00e9\ud83d\ude00","n":[-12.5e+3,0,18446744073709551616],"t":true,"f":false,"z":null,"o":{"":{}},"e":[]}"#;

#[test]
fn every_truncation_is_an_error() {
    for end in 0..DOC.len() {
        let prefix = &DOC.as_bytes()[..end];
        assert!(
            parse(prefix).is_err(),
            "{}",
            String::from_utf8_lossy(prefix)
        );
    }
    assert!(parse(DOC.as_bytes()).is_ok());
}

#[test]
fn any_byte_changed_parses_or_fails_without_panicking() {
    for at in 0..DOC.len() {
        for b in [
            b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', b'-', b'e', b'.', b'u', 0xff, 0,
        ] {
            let mut text = DOC.as_bytes().to_vec();
            text[at] = b;
            let _ = parse(&text);
        }
    }
}

#[test]
fn writes_compact_json_as_parsed() {
    assert_eq!(
        parse(DOC.as_bytes()).unwrap().to_json(),
        DOC.replace(r#"a\"\\\u00e9\ud83d\ude00"#, "a\\\"\\\\é😀")
    );
    let spaced = r#" { "b" : [ 1 , { } ] , "a" : "x" } "#;
    assert_eq!(
        parse(spaced.as_bytes()).unwrap().to_json(),
        r#"{"b":[1,{}],"a":"x"}"#
    );
}

#[test]
fn strings_are_escaped_as_serde_json_does() {
    let mut all: String = (0u8..0x80).map(char::from).collect();
    all.push_str("é€😀\u{7f}\u{2028}");
    let mut out = String::new();
    push_str(&mut out, &all);
    assert_eq!(out, serde_json::to_string(&all).unwrap());
    assert_eq!(string(&out), all);
}

#[test]
fn integers_and_options() {
    let mut out = String::new();
    for n in [0, 7, 10, 1_000_000, u64::MAX] {
        push_u64(&mut out, n);
        out.push(' ');
    }
    push_opt_u64(&mut out, None);
    push_opt_str(&mut out, None);
    push_opt_str(&mut out, Some("x"));
    assert_eq!(out, "0 7 10 1000000 18446744073709551615 nullnull\"x\"");
}

#[test]
fn sort_keys_gives_a_json_map() {
    let mut v =
        parse(br#"{"b":1,"a":{"z":[{"y":null,"x":true}],"c":false},"b":2,"B":0,"b":3}"#).unwrap();
    v.sort_keys();
    assert_eq!(
        v.to_json(),
        r#"{"B":0,"a":{"c":false,"z":[{"x":true,"y":null}]},"b":3}"#
    );
}
