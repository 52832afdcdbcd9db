//! Filter grammar tests: RFC 7644 examples, Entra's value paths, limits and garbage input.
use super::*;
use serde_json::{Value, json};

fn p(input: &str) -> Filter {
    match parse_filter(input) {
        Ok(f) => f,
        Err(e) => panic!("failed to parse {input:?}: {e}"),
    }
}

fn perr(input: &str) -> FilterError {
    match parse_filter(input) {
        Ok(f) => panic!("expected error for {input:?}, got {f:?}"),
        Err(e) => e,
    }
}

fn attr(name: &str) -> AttrPath {
    AttrPath::simple(name)
}

fn cmp(path: AttrPath, op: CompareOp, value: CompValue) -> Filter {
    Filter::Compare { path, op, value }
}

fn s(v: &str) -> CompValue {
    CompValue::String(v.to_string())
}

fn eq(name: &str, v: &str) -> Filter {
    cmp(attr(name), CompareOp::Eq, s(v))
}

fn and(a: Filter, b: Filter) -> Filter {
    Filter::And(Box::new(a), Box::new(b))
}

fn or(a: Filter, b: Filter) -> Filter {
    Filter::Or(Box::new(a), Box::new(b))
}

fn not(a: Filter) -> Filter {
    Filter::Not(Box::new(a))
}

fn never_exact(_: &AttrPath) -> bool {
    false
}

fn m(filter: &str, resource: &Value) -> bool {
    matches(&p(filter), resource, &never_exact)
}

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[test]
fn attr_path_helpers() {
    let a = AttrPath {
        schema: None,
        name: "name".into(),
        sub_attr: Some("givenName".into()),
    };
    assert!(a.is("NAME"));
    assert!(a.is_sub("name", "GIVENNAME"));
    assert!(!a.is_sub("name", "familyName"));
    assert_eq!(a.dotted(), "name.givenName");
    assert_eq!(attr("userName").dotted(), "userName");
    assert!(!attr("userName").is_sub("userName", "x"));
}

#[test]
fn simple_comparison() {
    assert_eq!(p(r#"userName eq "bjensen""#), eq("userName", "bjensen"));
}

#[test]
fn every_operator_any_case() {
    let ops = [
        ("eq", CompareOp::Eq),
        ("ne", CompareOp::Ne),
        ("co", CompareOp::Co),
        ("sw", CompareOp::Sw),
        ("ew", CompareOp::Ew),
        ("gt", CompareOp::Gt),
        ("ge", CompareOp::Ge),
        ("lt", CompareOp::Lt),
        ("le", CompareOp::Le),
    ];
    for (word, op) in ops {
        for spelled in [
            word.to_string(),
            word.to_uppercase(),
            format!("{}{}", &word[..1].to_uppercase(), &word[1..]),
        ] {
            assert_eq!(
                p(&format!(r#"title {spelled} "x""#)),
                cmp(attr("title"), op, s("x")),
                "{spelled}"
            );
        }
    }
    assert_eq!(p("title pr"), Filter::Present(attr("title")));
    assert_eq!(p("title PR"), Filter::Present(attr("title")));
    assert_eq!(p("title Pr"), Filter::Present(attr("title")));
}

#[test]
fn literal_values() {
    assert_eq!(
        p("active eq true"),
        cmp(attr("active"), CompareOp::Eq, CompValue::Bool(true))
    );
    assert_eq!(
        p("active eq FALSE"),
        cmp(attr("active"), CompareOp::Eq, CompValue::Bool(false))
    );
    assert_eq!(
        p("active eq True"),
        cmp(attr("active"), CompareOp::Eq, CompValue::Bool(true))
    );
    assert_eq!(
        p("manager eq NULL"),
        cmp(attr("manager"), CompareOp::Eq, CompValue::Null)
    );
    let n = |t: &str| CompValue::Number(serde_json::from_str(t).unwrap());
    assert_eq!(p("age gt 42"), cmp(attr("age"), CompareOp::Gt, n("42")));
    assert_eq!(
        p("age gt -1.5e3"),
        cmp(attr("age"), CompareOp::Gt, n("-1.5e3"))
    );
    assert_eq!(p("age lt 0.25"), cmp(attr("age"), CompareOp::Lt, n("0.25")));
}

#[test]
fn json_string_escapes() {
    assert_eq!(
        p(r#"displayName eq "a \"quoted\" \\ name""#),
        eq("displayName", r#"a "quoted" \ name"#)
    );
    assert_eq!(
        p(r#"displayName eq "caf\u00e9 \u2603""#),
        eq("displayName", "café ☃")
    );
    assert_eq!(
        p(r#"displayName eq "tab\there\n""#),
        eq("displayName", "tab\there\n")
    );
    assert_eq!(
        p(r#"displayName eq "Zoë 日本""#),
        eq("displayName", "Zoë 日本")
    );
    assert_eq!(p(r#"displayName eq """#), eq("displayName", ""));
    let e = perr(r#"displayName eq "bad \x escape""#);
    assert!(e.message.contains("invalid string"), "{e}");
    let e = perr(r#"displayName eq "unterminated"#);
    assert!(e.message.contains("unterminated"), "{e}");
    assert_eq!(e.position, 15);
}

#[test]
fn whitespace_tolerant() {
    let expected = and(eq("userName", "a"), eq("title", "b"));
    assert_eq!(
        p("   userName   eq  \"a\"    and\ttitle eq \"b\"   "),
        expected
    );
    assert_eq!(p("(userName eq \"a\")and(title eq \"b\")"), expected);
}

#[test]
fn precedence_not_and_or() {
    // a or b and c  ==  a or (b and c)
    assert_eq!(
        p(r#"a eq "1" or b eq "2" and c eq "3""#),
        or(eq("a", "1"), and(eq("b", "2"), eq("c", "3")))
    );
    // a and b or c  ==  (a and b) or c
    assert_eq!(
        p(r#"a eq "1" and b eq "2" or c eq "3""#),
        or(and(eq("a", "1"), eq("b", "2")), eq("c", "3"))
    );
    // not binds tighter than and
    assert_eq!(
        p(r#"not (a eq "1") and b eq "2""#),
        and(not(eq("a", "1")), eq("b", "2"))
    );
    // left associativity
    assert_eq!(
        p(r#"a eq "1" or b eq "2" or c eq "3""#),
        or(or(eq("a", "1"), eq("b", "2")), eq("c", "3"))
    );
}

#[test]
fn parentheses_override_precedence() {
    assert_eq!(
        p(r#"(a eq "1" or b eq "2") and c eq "3""#),
        and(or(eq("a", "1"), eq("b", "2")), eq("c", "3"))
    );
    assert_eq!(p(r#"((((a eq "1"))))"#), eq("a", "1"));
}

#[test]
fn not_forms() {
    assert_eq!(p(r#"not (a eq "1")"#), not(eq("a", "1")));
    assert_eq!(p(r#"NOT(a eq "1")"#), not(eq("a", "1")));
    assert_eq!(p(r#"not a eq "1""#), not(eq("a", "1")));
    assert_eq!(p(r#"not not (a eq "1")"#), not(not(eq("a", "1"))));
    // An attribute that happens to be called "not".
    assert_eq!(p("not pr"), Filter::Present(attr("not")));
    assert_eq!(p(r#"not eq "x""#), eq("not", "x"));
}

#[test]
fn keywords_case_insensitive() {
    assert_eq!(
        p(r#"a EQ "1" AND b Eq "2" Or NOT (c eq "3")"#),
        or(and(eq("a", "1"), eq("b", "2")), not(eq("c", "3")))
    );
}

#[test]
fn dotted_and_urn_paths() {
    assert_eq!(
        p(r#"name.givenName eq "Ann""#),
        cmp(
            AttrPath {
                schema: None,
                name: "name".into(),
                sub_attr: Some("givenName".into())
            },
            CompareOp::Eq,
            s("Ann")
        )
    );
    assert_eq!(
        p(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#),
        cmp(
            AttrPath {
                schema: None,
                name: "meta".into(),
                sub_attr: Some("lastModified".into())
            },
            CompareOp::Gt,
            s("2011-05-13T04:42:34Z")
        )
    );
    assert_eq!(
        p(&format!(r#"{ENT}:employeeNumber eq "701984""#)),
        cmp(
            AttrPath {
                schema: Some(ENT.into()),
                name: "employeeNumber".into(),
                sub_attr: None
            },
            CompareOp::Eq,
            s("701984")
        )
    );
    assert_eq!(
        p(&format!(
            r#"{ENT}:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#
        )),
        cmp(
            AttrPath {
                schema: Some(ENT.into()),
                name: "manager".into(),
                sub_attr: Some("value".into())
            },
            CompareOp::Eq,
            s("26118915-6090-4610-87e4-49d8ca9f808d")
        )
    );
    assert_eq!(
        p(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#),
        cmp(
            AttrPath {
                schema: Some("urn:ietf:params:scim:schemas:core:2.0:User".into()),
                name: "userName".into(),
                sub_attr: None
            },
            CompareOp::Sw,
            s("J")
        )
    );
    assert_eq!(
        p(r#"members.$ref pr"#),
        Filter::Present(AttrPath {
            schema: None,
            name: "members".into(),
            sub_attr: Some("$ref".into())
        })
    );
    assert_eq!(p(r#"x-custom_attr1 eq "v""#), eq("x-custom_attr1", "v"));
}

#[test]
fn entra_value_path_with_sub_attribute() {
    let expected = Filter::ValuePath {
        path: attr("emails"),
        filter: Box::new(and(eq("type", "work"), eq("value", "x@y.com"))),
    };
    assert_eq!(p(r#"emails[type eq "work"].value eq "x@y.com""#), expected);
    assert_eq!(
        p(r#"emails[type eq "work"].value pr"#),
        Filter::ValuePath {
            path: attr("emails"),
            filter: Box::new(and(eq("type", "work"), Filter::Present(attr("value")))),
        }
    );
    assert_eq!(
        p(r#"members[value eq "abc"]"#),
        Filter::ValuePath {
            path: attr("members"),
            filter: Box::new(eq("value", "abc")),
        }
    );
    assert_eq!(
        p(r#"emails[type eq "work"] and userName eq "a""#),
        and(
            Filter::ValuePath {
                path: attr("emails"),
                filter: Box::new(eq("type", "work")),
            },
            eq("userName", "a")
        )
    );
}

#[test]
fn rfc_examples_parse() {
    let examples = [
        r#"userName Eq "john""#,
        r#"Username eq "john""#,
        r#"userName eq "bjensen""#,
        r#"name.familyName co "O'Malley""#,
        r#"userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"title pr"#,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"title pr and userType eq "Employee""#,
        r#"title pr or userType eq "Intern""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
    ];
    for example in examples {
        p(example);
    }
}

#[test]
fn rfc_examples_evaluate() {
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
        "userName": "John",
        "title": "Tour Guide",
        "userType": "Employee",
        "name": {"familyName": "O'Malley", "givenName": "John"},
        "meta": {"lastModified": "2011-05-13T04:42:34Z"},
        "emails": [
            {"value": "john@example.com", "type": "work", "primary": true},
            {"value": "john@home.example.org", "type": "home"}
        ],
        "ims": [{"value": "john@foo.com", "type": "xmpp"}],
        ENT: {"employeeNumber": "701984", "manager": {"value": "m-1"}}
    });
    let yes = [
        r#"userName Eq "john""#,
        r#"Username eq "john""#,
        r#"name.familyName co "O'Malley""#,
        r#"userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"title pr"#,
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified gt "2011-01-01T00:00:00Z""#,
        r#"title pr and userType eq "Employee""#,
        r#"title pr or userType eq "Intern""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "M-1""#,
        r#"emails[type eq "work"].value eq "john@example.com""#,
        r#"emails[primary eq true]"#,
    ];
    for f in yes {
        assert!(m(f, &user), "expected match: {f}");
    }
    let no = [
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"nickName pr"#,
        r#"emails[type eq "home"].value eq "john@example.com""#,
        r#"emails[type eq "work" and value co "@example.org"]"#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#,
    ];
    for f in no {
        assert!(!m(f, &user), "expected no match: {f}");
    }
}

#[test]
fn evaluate_operators_on_strings() {
    let r = json!({"title": "Senior Engineer"});
    assert!(m(r#"title eq "senior engineer""#, &r));
    assert!(m(r#"title ne "junior""#, &r));
    assert!(!m(r#"title ne "SENIOR ENGINEER""#, &r));
    assert!(m(r#"title co "IOR eng""#, &r));
    assert!(m(r#"title sw "sen""#, &r));
    assert!(m(r#"title ew "NEER""#, &r));
    assert!(!m(r#"title ew "senior""#, &r));
    assert!(m(r#"title gt "A""#, &r));
    assert!(m(r#"title ge "senior engineer""#, &r));
    assert!(m(r#"title lt "z""#, &r));
    assert!(m(r#"title le "senior engineer""#, &r));
    assert!(!m(r#"title lt "a""#, &r));
    // Absent attributes compare false, and ne is their negation.
    assert!(!m(r#"nickName eq "x""#, &r));
    assert!(m(r#"nickName ne "x""#, &r));
    assert!(m(r#"nickName eq null"#, &r));
    assert!(!m(r#"title eq null"#, &r));
}

#[test]
fn evaluate_case_exact_callback() {
    let r = json!({"id": "AbC", "emails": [{"value": "X@Y.com"}]});
    let exact_id = |p: &AttrPath| p.is("id") || p.is_sub("emails", "value");
    assert!(!matches(&p(r#"id eq "abc""#), &r, &exact_id));
    assert!(matches(&p(r#"id eq "AbC""#), &r, &exact_id));
    assert!(matches(&p(r#"id eq "abc""#), &r, &never_exact));
    // Inside a value path the callback sees the combined path.
    assert!(!matches(&p(r#"emails[value eq "x@y.com"]"#), &r, &exact_id));
    assert!(matches(&p(r#"emails[value eq "X@Y.com"]"#), &r, &exact_id));
}

#[test]
fn evaluate_numbers_and_booleans() {
    let r = json!({"age": 42, "ratio": 0.5, "active": true, "big": 18446744073709551615u64});
    assert!(m("age eq 42", &r));
    assert!(m("age gt 41", &r));
    assert!(m("age ge 42", &r));
    assert!(m("age lt 42.5", &r));
    assert!(m("age le 42", &r));
    assert!(!m("age gt 42", &r));
    assert!(m("ratio lt 1", &r));
    assert!(m("big gt 1", &r));
    assert!(m("active eq true", &r));
    assert!(m("active ne false", &r));
    assert!(!m("active gt false", &r));
    assert!(!m(r#"age eq "42""#, &r));
    assert!(!m(r#"age co 4"#, &r));
    assert!(!m(r#"active eq "true""#, &r));
}

#[test]
fn evaluate_dates_lexicographically() {
    let r = json!({"meta": {"created": "2024-03-01T10:00:00Z"}});
    assert!(m(r#"meta.created gt "2024-02-29T23:59:59Z""#, &r));
    assert!(m(r#"meta.created lt "2024-03-01T10:00:01Z""#, &r));
    assert!(!m(r#"meta.created lt "2023-12-31T00:00:00Z""#, &r));
}

#[test]
fn evaluate_present() {
    let r = json!({
        "a": "x", "empty": "", "null": null, "arr": [], "obj": {}, "full": {"k": 1},
        "emails": [{"value": ""}, {"value": "x"}], "falsy": false, "zero": 0
    });
    assert!(m("a pr", &r));
    assert!(!m("empty pr", &r));
    assert!(!m("null pr", &r));
    assert!(!m("arr pr", &r));
    assert!(!m("obj pr", &r));
    assert!(!m("missing pr", &r));
    assert!(m("full pr", &r));
    assert!(m("falsy pr", &r));
    assert!(m("zero pr", &r));
    assert!(m("emails.value pr", &r));
    assert!(m("emails pr", &r));
    assert!(m("A PR", &r));
}

#[test]
fn evaluate_multi_valued_any_element() {
    let r = json!({
        "emails": [{"value": "a@x.com", "type": "home"}, {"value": "b@y.com", "type": "work"}],
        "tags": ["red", "Green"]
    });
    assert!(m(r#"emails.value eq "b@y.com""#, &r));
    assert!(m(
        r#"emails.type eq "work" and emails.value eq "a@x.com""#,
        &r
    ));
    // A value path requires both in the same element.
    assert!(!m(r#"emails[type eq "work" and value eq "a@x.com"]"#, &r));
    assert!(m(r#"emails[type eq "work" or value eq "a@x.com"]"#, &r));
    assert!(m(r#"emails[not (type eq "home")]"#, &r));
    assert!(m(r#"tags eq "green""#, &r));
    assert!(m(r#"tags[value eq "red"]"#, &r));
    assert!(m(r#"emails co "y.com""#, &r));
    assert!(!m(r#"missing[value eq "a"]"#, &r));
}

#[test]
fn evaluate_nested_value_path() {
    let r = json!({
        "groups": [
            {"display": "a", "roles": [{"value": "admin"}, {"value": "user"}]},
            {"display": "b", "roles": [{"value": "guest"}]}
        ]
    });
    assert!(m(
        r#"groups[display eq "a" and roles[value eq "admin"]]"#,
        &r
    ));
    assert!(!m(
        r#"groups[display eq "b" and roles[value eq "admin"]]"#,
        &r
    ));
    assert!(m(r#"groups[roles[value eq "guest"]].display eq "b""#, &r));
    // A single complex attribute can be used with a value path too.
    let single = json!({"name": {"givenName": "Ann"}});
    assert!(m(r#"name[givenName eq "ann"]"#, &single));
}

#[test]
fn evaluate_against_element() {
    let element = json!({"type": "work", "value": "x"});
    assert!(m(r#"type eq "work" and value eq "X""#, &element));
    assert!(m(r#"value eq "abc""#, &json!("abc")));
}

#[test]
fn unquoted_string_value_is_an_error() {
    let e = perr("userName eq bjensen");
    assert!(e.message.contains("must be quoted"), "{e}");
    assert_eq!(e.position, 12);
    let e = perr("userName eq bjensen@example.com");
    assert!(e.message.contains("must be quoted"), "{e}");
}

#[test]
fn error_messages_and_positions() {
    let e = perr("");
    assert!(e.message.contains("expected an attribute path"), "{e}");
    let e = perr(r#"userName "x""#);
    assert!(e.message.contains("expected an operator"), "{e}");
    assert_eq!(e.position, 9);
    let e = perr(r#"userName xx "x""#);
    assert!(
        e.message.contains("expected an operator") && e.message.contains("'xx'"),
        "{e}"
    );
    let e = perr(r#"(userName eq "x""#);
    assert!(e.message.contains("expected ')'"), "{e}");
    assert_eq!(e.position, 16);
    let e = perr(r#"userName eq "x")"#);
    assert!(e.message.contains("'and', 'or' or the end"), "{e}");
    assert_eq!(e.position, 15);
    let e = perr(r#"emails[type eq "work""#);
    assert!(e.message.contains("expected ']'"), "{e}");
    let e = perr(r#"userName eq "x" and"#);
    assert!(e.message.contains("expected an attribute path"), "{e}");
    let e = perr("userName eq");
    assert!(e.message.contains("comparison value"), "{e}");
    let e = perr(r#"userName == "x""#);
    assert!(e.message.contains("unexpected character '='"), "{e}");
    let e = perr(r#"a.b.c eq "x""#);
    assert!(e.message.contains("more than one sub-attribute"), "{e}");
    let e = perr(r#"1abc eq "x""#);
    assert!(
        e.message.contains("invalid number") || e.message.contains("expected an attribute"),
        "{e}"
    );
    let e = perr(r#"name.givenName[value eq "x"]"#);
    assert!(e.message.contains("value filter"), "{e}");
    let e = perr(r#"emails[type eq "work"]."#);
    assert!(e.message.contains("sub-attribute name"), "{e}");
    let e = perr(r#"age eq 01x"#);
    assert!(e.message.contains("invalid number"), "{e}");
    let e = perr(r#"urn:: eq "x""#);
    assert!(
        e.message.contains("schema") || e.message.contains("attribute name"),
        "{e}"
    );
    // Positions count characters, not bytes.
    let e = perr(r#"displayName eq "日本" xx"#);
    assert_eq!(e.position, 20);
    // Display includes the position.
    assert!(
        perr("userName eq")
            .to_string()
            .contains("(at character 11)")
    );
}

#[test]
fn length_limit() {
    let long = format!(r#"userName eq "{}""#, "a".repeat(MAX_INPUT_LEN));
    let e = perr(&long);
    assert!(e.message.contains("at most 4096"), "{e}");
    let fits = format!(r#"userName eq "{}""#, "a".repeat(MAX_INPUT_LEN - 20));
    assert!(parse_filter(&fits).is_ok());
    assert!(parse_patch_path(&"a".repeat(MAX_INPUT_LEN + 1)).is_err());
}

#[test]
fn depth_limit() {
    let ok = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(parse_filter(&ok).is_ok());
    let deep = format!(
        "{}a pr{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(perr(&deep).message.contains("nested too deeply"));
    // Far beyond the limit, unbalanced: must not overflow the stack.
    let huge = "(".repeat(4000);
    assert!(perr(&huge).message.contains("nested too deeply"));
    let nots = "not ".repeat(1000) + "a pr";
    assert!(perr(&nots).message.contains("nested too deeply"));
    let brackets = "a[".repeat(1000);
    assert!(perr(&brackets).message.contains("nested too deeply"));
    // Long flat chains are fine.
    let chain = vec!["a pr"; 400].join(" and ");
    let parsed = parse_filter(&chain).unwrap();
    assert!(matches(&parsed, &json!({"a": 1}), &never_exact));
    let ors = vec!["(a pr)"; 500].join("or");
    assert!(!matches(
        &parse_filter(&ors).unwrap(),
        &json!({}),
        &never_exact
    ));
}

#[test]
fn patch_paths() {
    let pp = |s: &str| parse_patch_path(s).unwrap();
    assert_eq!(
        pp("name.givenName"),
        PatchPath {
            attr: AttrPath {
                schema: None,
                name: "name".into(),
                sub_attr: Some("givenName".into())
            },
            value_filter: None,
            sub_attr: None
        }
    );
    assert_eq!(
        pp(r#"emails[type eq "work"].value"#),
        PatchPath {
            attr: attr("emails"),
            value_filter: Some(eq("type", "work")),
            sub_attr: Some("value".into())
        }
    );
    assert_eq!(
        pp(r#"members[value eq "2819c223"]"#),
        PatchPath {
            attr: attr("members"),
            value_filter: Some(eq("value", "2819c223")),
            sub_attr: None
        }
    );
    assert_eq!(
        pp(&format!("{ENT}:manager")),
        PatchPath {
            attr: AttrPath {
                schema: Some(ENT.into()),
                name: "manager".into(),
                sub_attr: None
            },
            value_filter: None,
            sub_attr: None
        }
    );
    assert_eq!(
        pp(&format!("{ENT}:manager.value")),
        PatchPath {
            attr: AttrPath {
                schema: Some(ENT.into()),
                name: "manager".into(),
                sub_attr: Some("value".into())
            },
            value_filter: None,
            sub_attr: None
        }
    );
    assert_eq!(
        pp(r#"addresses[type eq "work"].streetAddress"#),
        PatchPath {
            attr: attr("addresses"),
            value_filter: Some(eq("type", "work")),
            sub_attr: Some("streetAddress".into())
        }
    );
    assert_eq!(pp("  userName  ").attr, attr("userName"));
    assert_eq!(
        pp(r#"emails[type eq "work" and primary eq TRUE]"#).value_filter,
        Some(and(
            eq("type", "work"),
            cmp(attr("primary"), CompareOp::Eq, CompValue::Bool(true))
        ))
    );
}

#[test]
fn patch_path_errors() {
    for bad in [
        "",
        "   ",
        "emails[",
        r#"emails[type eq "work""#,
        r#"emails[type eq "work"]value"#,
        r#"emails[type eq "work"].value.x"#,
        r#"emails[type eq "work"].value eq "x""#,
        r#"name.givenName[type eq "x"]"#,
        r#"userName eq "x""#,
        "a.b.c",
        "\"userName\"",
        "userName)",
        "emails[]",
        "9lives",
    ] {
        assert!(parse_patch_path(bad).is_err(), "{bad:?} should fail");
    }
    let e = parse_patch_path("emails[type eq work]").unwrap_err();
    assert!(e.message.contains("must be quoted"));
}

/// Tiny deterministic xorshift generator for fuzz-style tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_garbage_never_panics() {
    let alphabet: Vec<char> = "abc eqorandtpr()[].:\"\\$-_019 \tü日\u{0}{}=!,'eNOT"
        .chars()
        .collect();
    let tokens = [
        "userName", " eq ", " and ", " or ", "not ", "(", ")", "[", "]", ".", "\"x\"", "\"",
        "\\u00", "pr", " ", "true", "1e5", "-", "urn:a:b:", "emails", "value", "$ref",
    ];
    let resource = json!({"userName": "x", "emails": [{"value": "x", "type": "work"}], "a": {"b": [1, "x", null]}});
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let mut input = String::new();
        if rng.below(2) == 0 {
            for _ in 0..rng.below(40) {
                input.push(alphabet[rng.below(alphabet.len())]);
            }
        } else {
            for _ in 0..rng.below(20) {
                input.push_str(tokens[rng.below(tokens.len())]);
            }
        }
        if let Ok(f) = parse_filter(&input) {
            let _ = matches(&f, &resource, &never_exact);
        }
        let _ = parse_patch_path(&input);
    }
}

#[test]
fn nul_in_a_string_literal_is_refused() {
    let e = perr(r#"userName eq "a\u0000b""#);
    assert!(e.message.contains("NUL"), "{e}");
    assert!(parse_filter(r#"userName eq "a\u0001b""#).is_ok());
}

#[test]
fn operands_flatten_one_operator_only() {
    let f = parse_filter("a pr or (b pr or c pr) or d pr and e pr").unwrap();
    let ops = f.operands();
    assert_eq!(ops.len(), 4, "{ops:?}");
    assert!(matches!(ops[3], Filter::And(..)));
    assert_eq!(ops[3].operands().len(), 2);
    let leaf = parse_filter("a pr").unwrap();
    assert_eq!(leaf.operands(), vec![&leaf]);
}
